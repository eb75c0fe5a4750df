"""`GET /api/v1/metrics`: the team's certificates for Prometheus (api/metrics.py builds them)."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from api.metrics import CONTENT_TYPE, metrics_render
from api.v1.base import V1Mixin


class MetricsView(V1Mixin, APIView):
    """Scraped with a `read` key: `Authorization: Bearer …`, or `?api_key=…` for scrapers that
    cannot set headers."""

    pagination_class = None

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # Scrapers ask for text/plain or OpenMetrics, which the JSON renderer (used for this
        # view's error answers) does not offer. The answer is always the text format: every
        # Prometheus reads it, and OpenMetrics would need prometheus_client's slower writer.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        parameters=[OpenApiParameter("api_key", OpenApiTypes.STR, description="the key, when no header can be set")],
        responses={(200, "text/plain"): OpenApiTypes.STR},
        summary="The team's certificates, addresses, findings and registrations as Prometheus metrics",
    )
    def get(self, request: Request) -> HttpResponse:
        body = metrics_render(team=self.caller.team, now=timezone.now())
        response = HttpResponse(body, content_type=CONTENT_TYPE)
        response["Cache-Control"] = "no-store"
        return response
