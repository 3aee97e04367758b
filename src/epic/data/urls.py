"""Routes of the data app."""

from django.urls import path

from epic.data import views

urlpatterns = [path("data/session/", views.data_session, name="data_session_list")]
