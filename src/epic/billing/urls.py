"""Routes of the billing app."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from epic.billing import views

router = SimpleRouter()
router.register("jobauth", views.JobAuthViewSet, basename="jobauth")

urlpatterns = [
    path("billing/limits/", views.billing_limits, name="billing_limits"),
    *router.urls,
]
