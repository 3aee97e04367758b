"""Routes of the projects app."""

from rest_framework.routers import SimpleRouter

from epic.projects import views

router = SimpleRouter()
router.register("projects", views.ProjectViewSet, basename="projects")

urlpatterns = router.urls
