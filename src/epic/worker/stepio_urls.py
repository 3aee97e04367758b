"""Routes of the internal step I/O endpoint, mounted under /internal/steps/."""

from django.urls import path

from epic.worker import stepio_views as views

urlpatterns = [
    path("<int:step_id>/scheduler-job/", views.SchedulerJobView.as_view(), name="step-io-job"),
    path("<int:step_id>/bundle/", views.BundleView.as_view(), name="step-io-bundle"),
    path("<int:step_id>/case/", views.CaseView.as_view(), name="step-io-case"),
    path("<int:step_id>/case/parts/", views.CasePartView.as_view(), name="step-io-case-part"),
    path("<int:step_id>/logs/<str:stream>/", views.LogView.as_view(), name="step-io-log"),
    path("<int:step_id>/exit/", views.ExitView.as_view(), name="step-io-exit"),
]
