"""/api/v1/agents/ (team admins manage their scanning agents) and /api/v1/agent/ (the protocol
`keychest-agent` speaks: enrol with a one-time token, fetch work, post results).

The protocol views are plain views with one small authentication helper (as healthchecks' API
is): an agent key is not a user's key and opens nothing but these two calls, for its own agent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from drf_spectacular.utils import extend_schema, extend_schema_view, inline_serializer
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from agents.models import MAX_CADENCE, MIN_CADENCE, Agent
from agents.services import (
    AgentRefused,
    agent_authenticate,
    agent_contact,
    agent_create,
    agent_enrol,
    agent_report,
    agent_revoke,
    agent_sweep_report,
    agent_work,
    domain_assign,
    server_assign,
)
from api.access import MalformedAuthorization, key_from_header
from api.v1.base import V1Mixin
from api.v1.views import UUID_RE
from keychest.ratelimit import Limit, client_ip, hit
from keychest.tenancy import get_for_team_or_404
from monitors.models import Server, WatchedDomain


class AgentSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    state = serializers.SerializerMethodField()
    clock_skew_reported = serializers.SerializerMethodField()
    servers = serializers.IntegerField(source="server_count", read_only=True, default=0)

    class Meta:
        model = Agent
        fields = [
            "id",
            "name",
            "state",
            "cadence",
            "version",
            "key_prefix",
            "created_at",
            "enrolled_at",
            "last_contact_at",
            "last_ip",
            "clock_skew",
            "clock_skew_reported",
            "revoked_at",
            "servers",
        ]

    def get_state(self, obj: Agent) -> str:
        return obj.state(self.context["now"])

    def get_clock_skew_reported(self, obj: Agent) -> bool:
        return obj.skew_reported()


class AgentCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    cadence = serializers.IntegerField(min_value=MIN_CADENCE, max_value=MAX_CADENCE, required=False)


class AgentAssignSerializer(serializers.Serializer):
    servers = serializers.ListField(child=serializers.UUIDField(), required=False, default=list, max_length=1000)
    domains = serializers.ListField(child=serializers.UUIDField(), required=False, default=list, max_length=1000)


# What assign and unassign answer: how many servers and domains moved.
ASSIGNED = inline_serializer(
    "AgentAssignment", {"servers": serializers.IntegerField(), "domains": serializers.IntegerField()}
)


@extend_schema_view(
    list=extend_schema(summary="Scanning agents of the team"),
    retrieve=extend_schema(summary="One agent"),
    create=extend_schema(request=AgentCreateSerializer, summary="Create an agent (its enrolment token is shown once)"),
    destroy=extend_schema(summary="Revoke an agent (its key stops working at once)"),
)
class AgentViewSet(
    V1Mixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = AgentSerializer
    lookup_url_kwarg = "id"
    lookup_value_regex = UUID_RE
    ordering_fields = ["created_at", "name", "last_contact_at"]
    required_scopes = {"create": "admin", "destroy": "admin", "assign": "admin", "unassign": "admin"}
    queryset = Agent.objects.none()

    def get_queryset(self) -> QuerySet[Agent]:
        return Agent.objects.for_team(self.caller.team).annotate(
            server_count=Count("servers", filter=Q(servers__removed_at=None))
        )

    def get_object(self) -> Agent:
        return get_for_team_or_404(self.get_queryset(), self.caller.team, self.kwargs["id"])

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "now": timezone.now()}

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = AgentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        agent, token = agent_create(team=self.caller.team, **data.validated_data)
        body = dict(AgentSerializer(agent, context=self.get_serializer_context()).data)
        body["token"] = token
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        agent_revoke(agent=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _assign(self, request: Request, agent: Agent | None) -> Response:
        """Another team's server or domain is a 404 when assigning, and simply not found (not
        counted) when giving servers back."""
        data = AgentAssignSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        team = self.caller.team
        if agent is None:
            servers = list(Server.objects.for_team(team).filter(uuid__in=data.validated_data["servers"]))
            domains = list(WatchedDomain.objects.for_team(team).filter(uuid__in=data.validated_data["domains"]))
        else:
            live_servers = Server.objects.filter(removed_at=None)
            live_domains = WatchedDomain.objects.filter(removed_at=None)
            servers = [get_for_team_or_404(live_servers, team, u) for u in data.validated_data["servers"]]
            domains = [get_for_team_or_404(live_domains, team, u) for u in data.validated_data["domains"]]
        for server in servers:
            server_assign(server=server, agent=agent)
        moved = sum(domain_assign(domain=d, agent=agent) for d in domains)
        return Response({"servers": len(servers) + moved, "domains": len(domains)})

    @extend_schema(
        request=AgentAssignSerializer, responses=ASSIGNED, summary="Assign servers and domains to this agent"
    )
    @action(detail=True, methods=["post"])
    def assign(self, request: Request, id: str) -> Response:
        agent = self.get_object()
        if agent.revoked_at is not None:
            raise exceptions.ValidationError({"agent": "this agent is revoked"})
        return self._assign(request, agent)

    @extend_schema(
        request=AgentAssignSerializer, responses=ASSIGNED, summary="Give servers and domains back to the SaaS scanner"
    )
    @action(detail=False, methods=["post"])
    def unassign(self, request: Request) -> Response:
        return self._assign(request, None)


# --- the agent protocol -------------------------------------------------------------------------
MAX_BODY = 8 * 1024 * 1024
# Enrolment is the one call without a key: a few tries per address (tokens are 256-bit anyway).
ENROL_LIMIT = Limit("agent-enrol", 20, 3600)

AgentView = Callable[[HttpRequest, Agent], HttpResponse]


def _error(message: str, status_code: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status_code)


def _json_body(request: HttpRequest) -> Any:
    if len(request.body) > MAX_BODY:
        raise AgentRefused("request body too large")
    try:
        return json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise AgentRefused("the body is not JSON") from None


def agent_required(view: AgentView) -> Callable[[HttpRequest], HttpResponse]:
    """Authenticate the agent key (Bearer), record the contact and the agent's clock skew."""

    def wrapped(request: HttpRequest) -> HttpResponse:
        try:
            secret = key_from_header(request.META.get("HTTP_AUTHORIZATION", ""))
        except MalformedAuthorization:  # an unknown key, as far as the agent protocol goes
            secret = None
        agent = agent_authenticate(secret or "")
        if agent is None:
            response = _error("unknown or revoked agent key", 401)
            response["WWW-Authenticate"] = 'Bearer realm="KeyChest agent"'
            return response
        sent = parse_datetime(request.META.get("HTTP_X_KEYCHEST_AGENT_TIME", "") or "")
        agent_contact(
            agent=agent,
            ip=client_ip(request),
            version=request.META.get("HTTP_X_KEYCHEST_AGENT_VERSION", ""),
            agent_time=sent if sent is not None and sent.tzinfo is not None else None,
        )
        try:
            return view(request, agent)
        except AgentRefused as exc:
            return _error(str(exc), 400)

    return wrapped


@csrf_exempt
@require_http_methods(["POST"])
def agent_enrol_view(request: HttpRequest) -> HttpResponse:
    """POST {"token": "kcat_...", "version": "..."} -> {"key": "kcag_...", "agent": uuid} (shown once)."""
    verdict = hit(ENROL_LIMIT, client_ip(request))
    if not verdict.allowed:
        response = _error("too many enrolment attempts from this address", 429)
        response["Retry-After"] = str(verdict.retry_after)
        return response
    try:
        body = _json_body(request)
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise AgentRefused("token is required")
        agent, key = agent_enrol(token=token, version=str(body.get("version", ""))[:40], ip=client_ip(request))
    except AgentRefused as exc:
        return _error(str(exc), 400)
    response = JsonResponse({"agent": str(agent.uuid), "key": key, "cadence": agent.cadence}, status=201)
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt
@require_http_methods(["GET"])
@agent_required
def agent_work_view(request: HttpRequest, agent: Agent) -> HttpResponse:
    """GET ?after=<next of the previous page>&limit=N: one page of the work list."""
    limit = request.GET.get("limit")
    if limit is not None and not limit.isdigit():
        raise AgentRefused("limit is a whole number")
    body = agent_work(agent=agent, after=request.GET.get("after", ""), limit=int(limit) if limit else None)
    body["clock_skew"] = agent.clock_skew
    return JsonResponse(body)


@csrf_exempt
@require_http_methods(["POST"])
@agent_required
def agent_results_view(request: HttpRequest, agent: Agent) -> HttpResponse:
    body = _json_body(request)
    if not isinstance(body, dict):
        raise AgentRefused("the body is an object with `results`")
    outcome = agent_report(agent=agent, results=body.get("results"))
    return JsonResponse({**outcome.as_dict(), "clock_skew": agent.clock_skew})


@csrf_exempt
@require_http_methods(["POST"])
@agent_required
def agent_sweeps_view(request: HttpRequest, agent: Agent) -> HttpResponse:
    """One range's sweep: {"range": uuid, "services": [{address, port, protocol, sni, probe}], "seconds"}."""
    try:
        outcome = agent_sweep_report(agent=agent, data=_json_body(request))
    except AgentRefused as exc:
        if str(exc) == "not-found":
            return _error("not-found", 404)
        raise
    return JsonResponse(outcome)
