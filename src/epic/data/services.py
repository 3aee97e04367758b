"""Issuing data store credentials and resolving them for the S3 endpoint."""

import logging
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from epic.data.models import DataCredential
from epic.data.paths import user_prefix
from epic.data.s3.auth import S3Credential
from epic.data.store import LocalObjectStore

logger = logging.getLogger(__name__)


def issue_credential(user) -> DataCredential:
    """Issue a new temporary credential for the user's prefix, dropping expired ones."""
    now = timezone.now()
    DataCredential.objects.filter(expires_at__lt=now - timedelta(days=1)).delete()
    lifetime = timedelta(seconds=settings.EPIC_DATA_SESSION_SECONDS)
    return DataCredential.objects.create(
        user=user, prefix=user_prefix(user), expires_at=now + lifetime
    )


def resolve_credential(access_key_id: str) -> S3Credential | None:
    """Look up a credential for the S3 endpoint, whatever thread asks."""
    close_old_connections()
    row = DataCredential.objects.filter(access_key_id=access_key_id, user__is_active=True).first()
    if row is None:
        return None
    return S3Credential(
        access_key_id=row.access_key_id,
        secret_key=row.secret_key,
        session_token=row.session_token,
        prefix=row.prefix,
        expires_at=row.expires_at,
    )


@lru_cache(maxsize=1)
def object_store() -> LocalObjectStore:
    """The data store of this installation, readable by the server's user alone."""
    store = LocalObjectStore(settings.EPIC_DATA_ROOT)
    settings.EPIC_DATA_ROOT.chmod(0o700)
    return store
