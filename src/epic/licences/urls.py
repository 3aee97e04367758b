"""Routes of the licences app."""

from rest_framework.routers import SimpleRouter

from epic.licences import views

router = SimpleRouter()
router.register("licenses", views.LicenceViewSet, basename="licenses")

urlpatterns = router.urls
