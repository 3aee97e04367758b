"""File and folder endpoints: what the caller's own data store prefix holds, with stable ids."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets

from epic.data.file_serializers import (
    DataFileDetailSerializer,
    DataFileSerializer,
    DataFilterSerializer,
    DataFolderDetailSerializer,
    DataFolderSerializer,
)
from epic.data.files import sync_index
from epic.data.models import DataFile, DataFolder
from epic.data.paths import user_prefix


@extend_schema_view(list=extend_schema(parameters=[DataFilterSerializer]))
class IndexedViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Lists and reads of the caller's own index rows, synced with the store before each."""

    model = None
    detail_serializer_class = None
    lookup_value_regex = "[0-9]+"

    def initial(self, request, *args, **kwargs):
        """Check the caller and the filters, then bring the caller's index up to date."""
        super().initial(request, *args, **kwargs)
        self.filters = {}
        if self.action == "list":
            filters = DataFilterSerializer(data=request.query_params)
            filters.is_valid(raise_exception=True)
            self.filters = filters.validated_data
        if self.action in ("list", "retrieve"):
            sync_index(request.user)

    def get_serializer_class(self):
        """Reads show more than lists."""
        return self.serializer_class if self.action == "list" else self.detail_serializer_class

    def get_queryset(self):
        """The caller's rows in key order, narrowed by the list's filters."""
        rows = self.model.objects.filter(user=self.request.user).order_by("key")
        if self.filters.get("name"):
            rows = rows.filter(name__icontains=self.filters["name"])
        if self.filters.get("path") is not None:
            rows = self.in_folder(rows, user_prefix(self.request.user) + self.filters["path"])
        return rows

    def in_folder(self, rows, folder_key: str):
        """Narrow rows to those directly in the folder with this key."""
        raise NotImplementedError


class DataFileViewSet(IndexedViewSet):
    """The files of the caller's data store."""

    model = DataFile
    serializer_class = DataFileSerializer
    detail_serializer_class = DataFileDetailSerializer

    def in_folder(self, rows, folder_key: str):
        """The files directly in the folder; the user's prefix holds those with no folder."""
        if folder_key == user_prefix(self.request.user):
            return rows.filter(folder__isnull=True)
        return rows.filter(folder__key=folder_key)


class DataFolderViewSet(IndexedViewSet):
    """The folders of the caller's data store."""

    model = DataFolder
    serializer_class = DataFolderSerializer
    detail_serializer_class = DataFolderDetailSerializer

    def in_folder(self, rows, folder_key: str):
        """The folders directly in the folder."""
        return rows.filter(parent_key=folder_key)
