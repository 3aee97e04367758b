"""The API's routes: every app's under /api/v2/."""

from django.urls import include, path

api = [
    path("", include("epic.accounts.urls")),
    path("", include("epic.catalog.urls")),
    path("", include("epic.projects.urls")),
    path("", include("epic.jobs.urls")),
    path("", include("epic.data.urls")),
    path("", include("epic.licences.urls")),
]

urlpatterns = [path("api/v2/", include(api))]

handler404 = "epic.api.exceptions.not_found"
handler500 = "epic.api.exceptions.server_error"
