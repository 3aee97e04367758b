"""Routes of the licences app."""

urlpatterns = []
