"""Routes of /api/v1 and its OpenAPI schema and Swagger UI."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import Resolver404, include, path, re_path, resolve
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from api.v1 import agents, ranges, views
from api.v1.certificates import CertificateViewSet
from api.v1.metrics import MetricsView
from api.v1.policy import IssuancePolicyView
from api.v1.views_servers import ServerViewSet
from keychest.middleware import CONTENT_SECURITY_POLICY


class SwaggerView(SpectacularSwaggerSplitView):
    """Swagger UI with its start-up script as a separate request (no inline script). The page
    keeps the site's policy except for styles: Swagger UI sets inline styles as it renders."""

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
            "style-src 'self'", "style-src 'self' 'unsafe-inline'"
        )
        return response


@csrf_exempt  # the view it hands over to is a DRF view: that view's own rules apply
def without_trailing_slash(request: HttpRequest, path: str) -> HttpResponse:
    """`/api/v1/servers/{id}` answers as `/api/v1/servers/{id}/` does, for every method.

    Django's APPEND_SLASH answers 301, and clients that follow a 301 turn PATCH and DELETE into
    GET: the change silently does not happen. The canonical URLs (and the schema) keep the slash.
    """
    try:
        match = resolve(f"{request.path_info}/")
    except Resolver404:
        raise Http404("No such API URL") from None
    if match.func is without_trailing_slash:
        raise Http404("No such API URL")
    return match.func(request, *match.args, **match.kwargs)


router = SimpleRouter()
router.register("servers", ServerViewSet, basename="v1-server")
router.register("domains", views.DomainViewSet, basename="v1-domain")
router.register("certificates", CertificateViewSet, basename="v1-certificate")
router.register("findings", views.FindingViewSet, basename="v1-finding")
router.register("events", views.EventViewSet, basename="v1-event")
router.register("channels", views.ChannelViewSet, basename="v1-channel")
router.register("api-keys", views.ApiKeyViewSet, basename="v1-apikey")
router.register("audit", views.AuditViewSet, basename="v1-audit")
router.register("members", views.MemberViewSet, basename="v1-member")
router.register("agents", agents.AgentViewSet, basename="v1-agent")
router.register("ranges", ranges.IPRangeViewSet, basename="v1-range")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="v1-schema"),
    path("docs/", SwaggerView.as_view(url_name="v1-schema"), name="v1-docs"),
    path("expiry", views.ExpiryView.as_view(), name="v1-expiry"),
    path("metrics", MetricsView.as_view(), name="v1-metrics"),
    path("issuance-policy/", IssuancePolicyView.as_view(), name="v1-issuance-policy"),
    path("exports/servers.csv", views.ServersCsvView.as_view(), name="v1-export-servers"),
    path("exports/certificates.csv", views.CertificatesCsvView.as_view(), name="v1-export-certificates"),
    path("exports/calendar.ics", views.CalendarView.as_view(), name="v1-export-calendar"),
    path("exports/calendar-url", views.CalendarUrlView.as_view(), name="v1-calendar-url"),
    path("agent/enrol", agents.agent_enrol_view, name="v1-agent-enrol"),
    path("agent/work", agents.agent_work_view, name="v1-agent-work"),
    path("agent/results", agents.agent_results_view, name="v1-agent-results"),
    path("agent/sweeps", agents.agent_sweeps_view, name="v1-agent-sweeps"),
    path("calendar/<str:token>.ics", views.CalendarFeedView.as_view(), name="api_calendar_feed"),
    path("", include(router.urls)),
    # Last: only what no route above matched.
    re_path(r"^(?P<path>.*[^/])$", without_trailing_slash),
]
