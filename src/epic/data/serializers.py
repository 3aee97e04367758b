"""Serializers for data sessions."""

from django.conf import settings
from rest_framework import serializers


class SessionTokenSerializer(serializers.Serializer):
    """The temporary credential itself."""

    aws_key_id = serializers.CharField(source="access_key_id")
    aws_secret_key = serializers.CharField(source="secret_key")
    aws_session_token = serializers.CharField(source="session_token")
    expiration = serializers.DateTimeField(source="expires_at")


class DataSessionSerializer(serializers.Serializer):
    """Where the data store is and how to reach it."""

    s3_obj_key = serializers.CharField(source="prefix")
    s3_location = serializers.SerializerMethodField()
    aws_region = serializers.SerializerMethodField()
    s3_endpoint_url = serializers.SerializerMethodField()
    session_token = SessionTokenSerializer(source="*")

    def get_s3_location(self, credential) -> str:
        """The bucket name."""
        return settings.EPIC_S3_BUCKET

    def get_aws_region(self, credential) -> str:
        """The region the endpoint signs for."""
        return settings.EPIC_S3_REGION

    def get_s3_endpoint_url(self, credential) -> str:
        """The built-in S3 endpoint, for clients to set AWS_ENDPOINT_URL_S3."""
        return settings.EPIC_S3_ENDPOINT_URL
