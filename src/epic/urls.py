"""The API's routes: every app's under /api/v2/, and the compute nodes' step I/O."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

api = [
    path("", include("epic.accounts.urls")),
    path("", include("epic.catalog.urls")),
    path("", include("epic.projects.urls")),
    path("", include("epic.jobs.urls")),
    path("", include("epic.data.urls")),
    path("", include("epic.licences.urls")),
    path("", include("epic.billing.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularRedocView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("api/v2/", include(api)),
    path("internal/steps/", include("epic.worker.stepio_urls")),
]

handler404 = "epic.api.exceptions.not_found"
handler500 = "epic.api.exceptions.server_error"
