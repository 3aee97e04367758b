"""Routes of the catalog app."""

from rest_framework.routers import SimpleRouter

from epic.catalog import views

router = SimpleRouter()
router.register("catalog/applications", views.ApplicationViewSet, basename="catalog_applications")
router.register("catalog/clusters", views.QueueViewSet, basename="catalog_clusters")

urlpatterns = router.urls
