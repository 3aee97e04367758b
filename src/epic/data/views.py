"""Data endpoints."""

from rest_framework.decorators import api_view
from rest_framework.response import Response

from epic.data.serializers import DataSessionSerializer
from epic.data.services import issue_credential


@api_view(["GET"])
def data_session(request):
    """Issue a temporary credential for the caller's own prefix of the data store."""
    return Response(DataSessionSerializer(issue_credential(request.user)).data)
