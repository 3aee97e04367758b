"""`Authorization: Bearer <token>` authentication against hashed API tokens."""

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from epic.accounts.models import ApiToken, hash_token

# Writing last_used on every request would serialise readers on SQLite; once a minute is enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """Authenticate a request by the API token in its Authorization header."""

    keyword = "bearer"

    def authenticate(self, request):
        """Return (user, token) for a valid token, None without a header, or raise 401."""
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header.")

        try:
            plain = header[1].decode("ascii")
        except UnicodeDecodeError as error:
            raise exceptions.AuthenticationFailed("Invalid token.") from error
        # The profile comes with the user: most requests read its team and display currency.
        tokens = ApiToken.objects.select_related("user__profile")
        token = tokens.filter(key_hash=hash_token(plain)).first()
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid token.")

        now = timezone.now()
        if token.last_used is None or now - token.last_used > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        return token.user, token

    def authenticate_header(self, request) -> str:
        """Name the scheme so that a missing token answers 401, not 403."""
        return "Bearer"
