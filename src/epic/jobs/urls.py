"""Routes of the jobs app."""

from rest_framework.routers import SimpleRouter

from epic.jobs import views

router = SimpleRouter()
router.register("job", views.JobViewSet, basename="job")
router.register("jobstep", views.JobStepViewSet, basename="jobstep")
router.register("jobrefresh", views.LogRefreshViewSet, basename="jobrefresh")

urlpatterns = router.urls
