"""OpenAPI description of how API keys are presented (any one of the ways works)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "api.access.ApiKeyAuthentication"
    name = ["apiKeyBearer", "apiKeyQuery", "apiKeyBasic"]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        # Alternatives (OR), not all at once.
        return [{name: []} for name in self.name]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        return [
            {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
            {
                "type": "apiKey",
                "in": "query",
                "name": "api_key",
                "description": "?api_key=<key> (or api_key in the body)",
            },
            {"type": "http", "scheme": "basic", "description": "the key as the Basic-auth password"},
        ]
