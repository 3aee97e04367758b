"""Short-lived credentials for the data store, each limited to its user's prefix."""

import secrets
import string

from django.conf import settings
from django.db import models

KEY_ID_ALPHABET = string.ascii_uppercase + string.digits


def new_access_key_id() -> str:
    """A random access key id in AWS's shape (20 characters, upper case)."""
    return "EPIC" + "".join(secrets.choice(KEY_ID_ALPHABET) for _ in range(16))


class DataCredential(models.Model):
    """A temporary S3 credential issued by `GET /data/session/`.

    Limitation: the secret is stored as issued, because SigV4 verification needs it; protect
    the database as you would the data store itself.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="data_credentials"
    )
    access_key_id = models.CharField(max_length=20, unique=True, default=new_access_key_id)
    secret_key = models.CharField(max_length=64, default=secrets.token_urlsafe)
    session_token = models.CharField(max_length=128, default=secrets.token_urlsafe)
    prefix = models.CharField(max_length=100)
    expires_at = models.DateTimeField(db_index=True)


class DataFolder(models.Model):
    """A folder of a user's data store, as the file index last saw it.

    A folder exists while a key lies under it or a folder marker (a key ending in "/") names it;
    `key` is its full store key, which the API shows as obj_key.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="data_folders"
    )
    key = models.CharField(max_length=1024, unique=True)
    name = models.CharField(max_length=255)
    # The key of the folder holding this one; the user's prefix for a top-level folder.
    parent_key = models.CharField(max_length=1024, db_index=True)
    # The bytes of every file under the folder, at any depth.
    size = models.BigIntegerField(default=0)
    last_modified = models.DateTimeField(null=True)
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)


class DataFile(models.Model):
    """An object of a user's data store, as the file index last saw it.

    `key` is its full store key, which the API shows as obj_key; `folder` is None at the top.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="data_files"
    )
    key = models.CharField(max_length=1024, unique=True)
    name = models.CharField(max_length=255)
    folder = models.ForeignKey(
        DataFolder, on_delete=models.CASCADE, null=True, related_name="files"
    )
    size = models.BigIntegerField()
    last_modified = models.DateTimeField()
    etag = models.CharField(max_length=64)
    # The S3 user metadata given at upload.
    metadata = models.JSONField(default=dict)
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)


class DataIndex(models.Model):
    """When a user's file index last took in a walk of the store; its row serialises syncs."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="data_index"
    )
    # When the walk applied last began, so that an older walk never overwrites a newer one.
    walked_at = models.DateTimeField(null=True)
