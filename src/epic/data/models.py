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
