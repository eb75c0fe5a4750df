"""/api/v1/ranges/: IP ranges a team sweeps for TLS services, what each sweep found, and watching
a found service."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from agents.models import Agent
from api.v1.base import V1Mixin
from api.v1.views import UUID_RE
from discovery.models import FoundService, IPRange
from discovery.services import RangeRefused, range_add, range_remove, service_watch
from keychest.tenancy import get_for_team_or_404


class IPRangeSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    agent = serializers.UUIDField(source="agent.uuid", read_only=True, default=None, allow_null=True)
    services = serializers.IntegerField(source="service_count", read_only=True, default=0)

    class Meta:
        model = IPRange
        fields = [
            "id",
            "cidr",
            "label",
            "ports",
            "agent",
            "cadence",
            "rate",
            "created_at",
            "next_sweep_at",
            "last_sweep_at",
            "last_sweep_seconds",
            "last_sweep_attempts",
            "services",
        ]


class IPRangeCreateSerializer(serializers.Serializer):
    cidr = serializers.CharField(max_length=50)
    ports = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=65535), required=False)
    label = serializers.CharField(max_length=100, required=False, default="")  # type: ignore[assignment]
    agent = serializers.UUIDField(required=False, allow_null=True)
    cadence = serializers.IntegerField(min_value=3600, max_value=90 * 86400, required=False)


class FoundServiceSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)

    class Meta:
        model = FoundService
        fields = [
            "id",
            "address",
            "port",
            "protocol",
            "sni",
            "leaf_sha256",
            "subject",
            "issuer",
            "names",
            "not_after",
            "tls_version",
            "first_seen",
            "last_seen",
            "vanished_at",
        ]


class WatchSerializer(serializers.Serializer):
    service = serializers.UUIDField()
    name = serializers.CharField(max_length=253, required=False, default="", allow_blank=True)


@extend_schema_view(
    list=extend_schema(summary="IP ranges swept for TLS services"),
    retrieve=extend_schema(summary="One range"),
    create=extend_schema(request=IPRangeCreateSerializer, summary="Add a range (public, at most a /22, or an agent's)"),
    destroy=extend_schema(summary="Stop sweeping a range"),
)
class IPRangeViewSet(
    V1Mixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = IPRangeSerializer
    lookup_url_kwarg = "id"
    lookup_value_regex = UUID_RE
    ordering_fields = ["created_at", "cidr", "last_sweep_at"]
    required_scopes = {"create": "admin", "destroy": "admin"}
    queryset = IPRange.objects.none()

    def get_queryset(self) -> QuerySet[IPRange]:
        return (
            IPRange.objects.for_team(self.caller.team)
            .filter(removed_at=None)
            .select_related("agent")
            .annotate(service_count=Count("services", filter=Q(services__vanished_at=None)))
        )

    def get_object(self) -> IPRange:
        return get_for_team_or_404(self.get_queryset(), self.caller.team, self.kwargs["id"])

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = IPRangeCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        agent_id = values.pop("agent", None)
        agent = (
            get_for_team_or_404(Agent.objects.filter(revoked_at=None), self.caller.team, agent_id) if agent_id else None
        )
        try:
            created = range_add(team=self.caller.team, agent=agent, **values)
        except RangeRefused as exc:
            raise exceptions.ValidationError({"cidr": str(exc)}) from None
        return Response(IPRangeSerializer(created).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        range_remove(ip_range=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={200: FoundServiceSerializer(many=True)}, summary="TLS services found in the range")
    @action(detail=True, methods=["get"])
    def services(self, request: Request, id: str) -> Response:
        ip_range = self.get_object()
        rows = FoundService.objects.for_team(self.caller.team).filter(ip_range=ip_range)
        if request.query_params.get("vanished") not in ("1", "true"):
            rows = rows.filter(vanished_at=None)
        page = self.paginate_queryset(rows.order_by("-created_at", "-id"))
        return self.get_paginated_response(FoundServiceSerializer(page, many=True).data)

    @extend_schema(
        request=WatchSerializer, summary="Watch a found service (as a name in its certificate, or its address)"
    )
    @action(detail=True, methods=["post"])
    def watch(self, request: Request, id: str) -> Response:
        ip_range = self.get_object()
        data = WatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        found = get_for_team_or_404(
            FoundService.objects.filter(ip_range=ip_range), self.caller.team, data.validated_data["service"]
        )
        try:
            server = service_watch(service=found, name=data.validated_data["name"], added_by=self.caller.user)
        except (RangeRefused, ValueError) as exc:
            raise exceptions.ValidationError({"name": str(exc)}) from None
        return Response({"server": str(server.uuid), "label": server.label}, status=status.HTTP_201_CREATED)
