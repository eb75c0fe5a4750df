"""The OpenAPI schema and Swagger UI, served from our own static files under the site's CSP."""

from __future__ import annotations

import re

import pytest
import yaml

pytestmark = pytest.mark.django_db


def test_the_schema_describes_the_api(client) -> None:
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/servers/" in schema["paths"] and "/api/v1.0/servers/expiration/{domain}" in schema["paths"]
    assert {"apiKeyBearer", "apiKeyQuery", "apiKeyBasic"} <= set(schema["components"]["securitySchemes"])


def test_swagger_ui_loads_only_local_scripts(client) -> None:
    page = client.get("/api/v1/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "cdn.jsdelivr" not in html and "<script>" not in html
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts and all(src.startswith("/") for src in scripts)
    csp = page["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src", 1)[1].split(";")[0]
    init = client.get(scripts[-1].replace("&amp;", "&"))
    assert init.status_code == 200 and "SwaggerUIBundle" in init.content.decode()
    bundle = client.get(scripts[0])
    assert bundle.status_code == 200
