"""epic:// paths and the data store prefixes they map to."""

from rest_framework import serializers

SCHEME = "epic://"
MAX_PATH_LENGTH = 1024


def user_prefix(user) -> str:
    """The store prefix that holds a user's data: one path segment ending in `/`."""
    return f"user-{user.pk}/"


def parse_folder_path(value: str) -> str:
    """Return the folder an epic:// path names, relative to the user's prefix, ending in `/`.

    Raises a ValidationError for anything that could leave the user's prefix.
    """
    if not isinstance(value, str) or not value.startswith(SCHEME):
        raise serializers.ValidationError(f"A data path starts with {SCHEME}.")
    relative = value[len(SCHEME) :]
    if len(relative) > MAX_PATH_LENGTH:
        raise serializers.ValidationError(f"A data path has at most {MAX_PATH_LENGTH} characters.")
    if "\\" in relative or "\x00" in relative or relative.startswith("/"):
        raise serializers.ValidationError("A data path may not contain `\\`, NUL or start with /.")

    segments = [segment for segment in relative.split("/") if segment != ""]
    if any(segment in (".", "..") for segment in segments):
        raise serializers.ValidationError("A data path may not contain `.` or `..` segments.")
    return "".join(f"{segment}/" for segment in segments)
