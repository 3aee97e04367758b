"""Serializers for the indexed files and folders of a user's data store."""

from rest_framework import serializers

from epic.data.models import DataFile, DataFolder
from epic.data.paths import parse_folder_path

FILE_FIELDS = ["id", "created", "modified", "name", "obj_key", "size", "last_modified", "folder"]
FOLDER_FIELDS = ["id", "created", "modified", "name", "obj_key", "last_modified"]


class DataFileSerializer(serializers.ModelSerializer):
    """A file as lists show it; obj_key is its full S3 key, the user's prefix included."""

    obj_key = serializers.CharField(source="key", read_only=True)

    class Meta:
        model = DataFile
        fields = FILE_FIELDS
        read_only_fields = FILE_FIELDS


class DataFileDetailSerializer(DataFileSerializer):
    """A file as a read shows it, with the S3 user metadata given at upload."""

    meta_data = serializers.DictField(source="metadata", read_only=True)

    class Meta(DataFileSerializer.Meta):
        fields = ["id", "meta_data", *FILE_FIELDS[1:]]


class DataFolderSerializer(serializers.ModelSerializer):
    """A folder as lists show it; obj_key is its full S3 key, ending in "/"."""

    obj_key = serializers.CharField(source="key", read_only=True)

    class Meta:
        model = DataFolder
        fields = FOLDER_FIELDS
        read_only_fields = FOLDER_FIELDS


class DataFolderDetailSerializer(DataFolderSerializer):
    """A folder as a read shows it, with the bytes of every file under it as a string."""

    folder_size = serializers.CharField(source="size", read_only=True)

    class Meta(DataFolderSerializer.Meta):
        fields = ["id", "folder_size", *FOLDER_FIELDS[1:]]


class DataFilterSerializer(serializers.Serializer):
    """The `name` and `path` filters of the file and folder lists."""

    name = serializers.CharField(
        required=False, allow_blank=True, max_length=255, trim_whitespace=False
    )
    path = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)

    def validate_path(self, value: str) -> str | None:
        """The folder an epic:// path names, relative to the user's prefix; None if blank."""
        return parse_folder_path(value) if value else None
