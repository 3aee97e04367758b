"""Routes of the catalog app."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from epic.catalog import views

router = SimpleRouter()
router.register("catalog/applications", views.ApplicationViewSet, basename="catalog_applications")
router.register("catalog/clusters", views.QueueViewSet, basename="catalog_clusters")
router.register("catalog/desktop", views.DesktopNodeTypeViewSet, basename="catalog_desktop")

urlpatterns = [
    path(
        "config/<str:app_code>/<str:queue_code>/",
        views.application_configuration,
        name="config_read",
    ),
    *router.urls,
]
