"""The OpenAPI document: operation ids as the EPIC API names them, and Bearer authentication."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

# The EPIC API says "read" and "delete" where DRF's generator says "retrieve" and "destroy".
VERB_NAMES = {"_retrieve": "_read", "_destroy": "_delete"}


class EpicAutoSchema(AutoSchema):
    """DRF's schema generator with the EPIC API's operation id verbs."""

    def get_operation_id(self) -> str:
        """The generated id, with retrieve/destroy renamed read/delete."""
        operation_id = super().get_operation_id()
        for generated, epic in VERB_NAMES.items():
            if operation_id.endswith(generated):
                return operation_id[: -len(generated)] + epic
        return operation_id


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Documents `Authorization: Bearer <token>`."""

    target_class = "epic.accounts.authentication.BearerTokenAuthentication"
    name = "Bearer"

    def get_security_definition(self, auto_schema) -> dict:
        """An HTTP bearer scheme."""
        return {"type": "http", "scheme": "bearer"}
