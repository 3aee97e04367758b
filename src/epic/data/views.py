"""Data endpoints."""

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view
from rest_framework.response import Response

from epic.data.serializers import DataSessionSerializer
from epic.data.services import issue_credential


@extend_schema(operation_id="data_session_list", responses=DataSessionSerializer)
@api_view(["GET"])
def data_session(request):
    """Issue a temporary credential for the caller's own prefix of the data store."""
    return Response(DataSessionSerializer(issue_credential(request.user)).data)
