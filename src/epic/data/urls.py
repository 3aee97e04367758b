"""Routes of the data app."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from epic.data import file_views, views

router = SimpleRouter()
router.register("data/file", file_views.DataFileViewSet, basename="data_file")
router.register("data/folder", file_views.DataFolderViewSet, basename="data_folder")

urlpatterns = [
    path("data/session/", views.data_session, name="data_session_list"),
    *router.urls,
]
