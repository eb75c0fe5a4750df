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


_V1_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "string",
            "description": "a stable code: invalid, not-found, permission-denied, throttled, ...",
        },
        "detail": {"type": "string"},
        "fields": {"type": "object", "description": "per-field messages, for invalid input"},
    },
    "required": ["error", "detail"],
}
_V10_ERROR = {
    "type": "object",
    "properties": {"status": {"type": "string"}, "detail": {"type": "string"}},
    "required": ["status"],
}
# The answers any operation may give besides its own (api/errors.py): invalid input (bodies and
# query parameters), no or a refused key, no such object in the caller's team, and rate limits.
_ERRORS = {
    "400": "Invalid input",
    "401": "No usable key or session",
    "403": "The key's scopes or the caller's role do not allow this",
    "404": "No such object in the caller's team",
    "429": "Too many requests (Retry-After says when to retry)",
}


def error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: document the error answers of every operation, so
    clients (and the schema conformance tests) know them; an operation's own entries win."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", _V1_ERROR)
    schemas.setdefault("V10Error", _V10_ERROR)
    for path, item in result.get("paths", {}).items():
        ref = "#/components/schemas/V10Error" if path.startswith("/api/v1.0/") else "#/components/schemas/Error"
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for code, description in _ERRORS.items():
                responses.setdefault(
                    code, {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}
                )
    return result
