"""URLs of the team's certificate pages."""

from __future__ import annotations

from django.urls import path, register_converter

from certificates import pages


class Sha256Converter:
    regex = "[0-9a-fA-F]{64}"

    def to_python(self, value: str) -> str:
        return value.lower()

    def to_url(self, value: str) -> str:
        return value


register_converter(Sha256Converter, "sha256")

urlpatterns = [
    path("certificates/", pages.certificate_list, name="certificate_list"),
    path("certificates/<sha256:sha256>/", pages.certificate_detail, name="certificate_detail"),
    path("certificates/<sha256:sha256>/pem/", pages.certificate_pem, name="certificate_pem"),
]
