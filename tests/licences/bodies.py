"""Request bodies and paths shared by the licence API tests."""

URL = "/api/v2/licenses/"


def licence_body(application=None, **changes) -> dict:
    """A valid create body, with fields replaced by `changes`."""
    body = {
        "display_name": "Fluent site licence",
        "description": "Floating licence of the site",
        "environment": [
            {"variable_name": "ANSYSLMD_LICENSE_FILE", "value": "1055@lic.example.org"},
            {"variable_name": "ANSYSLI_SERVERS", "value": "2325@lic.example.org"},
        ],
        "application": application,
    }
    body.update(changes)
    return body


def variables(*pairs) -> list[dict]:
    """An environment list from (name, value) pairs."""
    return [{"variable_name": name, "value": value} for name, value in pairs]
