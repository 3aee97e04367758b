"""Routes of the accounts app."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from epic.accounts import views

router = SimpleRouter()
router.register("teams", views.TeamViewSet, basename="teams")

urlpatterns = [
    path("profile/settings/", views.profile_settings, name="profile_settings_list"),
    *router.urls,
]
