"""/api/v1/servers: CRUD, bulk add, pause/resume, scan now, results per address, findings, timeline."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from api.models import Scope
from api.v1.base import V1Mixin, bool_param
from api.v1.serializers import (
    BulkAddSerializer,
    BulkResultSerializer,
    FindingSerializer,
    ScanResultSerializer,
    ServerCreateSerializer,
    ServerSerializer,
    ServerUpdateSerializer,
    TimelineSerializer,
)
from kcproto.targets import InvalidTarget
from keychest.tenancy import get_for_team_or_404
from monitors import services as monitor_services
from monitors.models import Server

# The 409 answer: the server is watched already (its id is given).
ALREADY_WATCHED = inline_serializer(
    "AlreadyWatched",
    {"error": serializers.CharField(), "detail": serializers.CharField(), "id": serializers.UUIDField()},
)


def _conflict(server: Server) -> Response:
    return Response(
        {"error": "already-watched", "detail": f"{server.label} is already watched", "id": str(server.uuid)},
        status=status.HTTP_409_CONFLICT,
    )


SERVER_FILTERS = [
    OpenApiParameter("host", OpenApiTypes.STR, description="part of the host name"),
    OpenApiParameter("paused", OpenApiTypes.BOOL),
    OpenApiParameter("tag", OpenApiTypes.STR),
    OpenApiParameter("protocol", OpenApiTypes.STR),
]


@extend_schema_view(
    list=extend_schema(parameters=SERVER_FILTERS, summary="Watched servers"),
    retrieve=extend_schema(summary="One watched server"),
    create=extend_schema(
        request=ServerCreateSerializer,
        responses={201: ServerSerializer, 409: ALREADY_WATCHED},
        summary="Watch a server",
    ),
    partial_update=extend_schema(request=ServerUpdateSerializer, summary="Change a server's settings"),
    update=extend_schema(request=ServerUpdateSerializer, summary="Change a server's settings"),
    destroy=extend_schema(summary="Stop watching (history is kept)"),
)
class ServerViewSet(V1Mixin, viewsets.ModelViewSet):
    serializer_class = ServerSerializer
    lookup_field = "uuid"
    lookup_url_kwarg = "id"
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    ordering_fields = ["created_at", "host", "port", "last_scan_at"]
    required_scopes = {"bulk": Scope.ENROL, "create": Scope.ENROL, "scan": Scope.ENROL}
    queryset = Server.objects.none()

    def get_queryset(self) -> QuerySet[Server]:
        qs = (
            Server.objects.for_team(self.caller.team)
            .filter(removed_at=None)
            .annotate(open_findings=Count("findings", filter=Q(findings__resolved_at=None)))
        )
        params = self.request.query_params
        if params.get("host"):
            qs = qs.filter(host__icontains=params["host"].strip().lower())
        paused = bool_param(self.request, "paused")
        if paused is not None:
            qs = qs.filter(paused=paused)
        if params.get("tag"):
            qs = (
                qs.filter(tags__contains=[params["tag"]])
                if _json_contains_ok()
                else qs.filter(tags__icontains=params["tag"])
            )
        if params.get("protocol"):
            qs = qs.filter(protocol=params["protocol"])
        return qs

    def get_object(self) -> Server:
        return get_for_team_or_404(self.get_queryset(), self.caller.team, self.kwargs["id"])

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = ServerCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = {k: v for k, v in data.validated_data.items() if v is not None}
        try:
            server = monitor_services.server_enrol(team=self.caller.team, added_by=self.caller.user, **values)
        except InvalidTarget as exc:
            raise ValidationError({"host": [str(exc)]}) from None
        except monitor_services.AlreadyWatched as exc:
            return _conflict(exc.server)
        return Response(ServerSerializer(server).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        server = self.get_object()
        data = ServerUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        try:
            monitor_services.server_update(server=server, **data.validated_data)
        except InvalidTarget as exc:
            raise ValidationError({"non_field_errors": [str(exc)]}) from None
        return Response(ServerSerializer(self.get_object()).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        monitor_services.server_remove(server=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=BulkAddSerializer, responses={200: BulkResultSerializer}, summary="Watch many servers")
    @action(detail=False, methods=["post"])
    def bulk(self, request: Request) -> Response:
        data = BulkAddSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = monitor_services.servers_enrol_bulk(
            team=self.caller.team,
            text=data.validated_data["text"],
            protocol=data.validated_data.get("protocol"),
            tags=data.validated_data.get("tags"),
            added_by=self.caller.user,
        )
        return Response(BulkResultSerializer(result).data)

    @extend_schema(request=None, responses={200: ServerSerializer}, summary="Pause scanning")
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, id: str) -> Response:
        monitor_services.server_pause(server=self.get_object())
        return Response(ServerSerializer(self.get_object()).data)

    @extend_schema(request=None, responses={200: ServerSerializer}, summary="Resume scanning")
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, id: str) -> Response:
        monitor_services.server_resume(server=self.get_object())
        return Response(ServerSerializer(self.get_object()).data)

    @extend_schema(request=None, responses={202: ServerSerializer}, summary="Scan now")
    @action(detail=True, methods=["post"])
    def scan(self, request: Request, id: str) -> Response:
        server = self.get_object()
        if server.paused:
            raise ValidationError({"non_field_errors": ["the server is paused; resume it first"]})
        monitor_services.server_scan_soon(server=server)
        return Response(ServerSerializer(self.get_object()).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[OpenApiParameter("history", OpenApiTypes.BOOL, description="include earlier results too")],
        responses={200: ScanResultSerializer(many=True)},
        summary="What each address presented",
    )
    @action(detail=True, methods=["get"])
    def results(self, request: Request, id: str) -> Response:
        server = self.get_object()
        qs = server.results.all()
        if not bool_param(request, "history"):
            qs = qs.filter(current=True)
        qs = qs.order_by("address", "-first_seen", "-id")[:500]
        return Response(ScanResultSerializer(qs, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("state", OpenApiTypes.STR, enum=["open", "resolved", "all"])],
        responses={200: FindingSerializer(many=True)},
        summary="Problems found on this server",
    )
    @action(detail=True, methods=["get"])
    def findings(self, request: Request, id: str) -> Response:
        server = self.get_object()
        qs = server.findings.select_related("server")
        state = request.query_params.get("state", "open")
        if state == "open":
            qs = qs.filter(resolved_at=None)
        elif state == "resolved":
            qs = qs.exclude(resolved_at=None)
        return Response(FindingSerializer(qs[:500], many=True).data)

    @extend_schema(responses={200: TimelineSerializer(many=True)}, summary="What changed, when")
    @action(detail=True, methods=["get"])
    def timeline(self, request: Request, id: str) -> Response:
        server = self.get_object()
        return Response(TimelineSerializer(server.timeline.all()[:500], many=True).data)


def _json_contains_ok() -> bool:
    """JSON containment (`tags @> [...]`) exists on PostgreSQL; SQLite falls back to text search."""
    from django.db import connection

    return connection.vendor == "postgresql"
