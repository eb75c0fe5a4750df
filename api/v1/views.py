"""/api/v1: watched domains, findings, events, channels, API keys, audit, members, expiry, exports."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import exports
from api.expiry import expiration_report
from api.models import ApiKey, AuditEntry, CalendarFeed, Scope
from api.selectors import one_per_issuance, team_certificates
from api.services import apikey_create, apikey_revoke
from api.v1.base import Cursor, V1Mixin, datetime_param
from api.v1.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    AuditEntrySerializer,
    CertificateSerializer,
    ChannelCreateSerializer,
    ChannelSerializer,
    ChannelUpdateSerializer,
    DiscoveredHostSerializer,
    EventSerializer,
    FindingSerializer,
    InvitationSerializer,
    InviteSerializer,
    MemberSerializer,
    WatchedDomainCreateSerializer,
    WatchedDomainDetailSerializer,
    WatchedDomainSerializer,
    WatchedDomainUpdateSerializer,
)
from api.views_v10 import ExpirationSerializer
from certificates.services import certificates_for
from kcproto.names import InvalidName
from kcproto.targets import InvalidTarget
from keychest.accounts.models import Membership, Team
from keychest.accounts.services import invitation_create
from keychest.ratelimit import client_ip
from keychest.tenancy import get_for_team_or_404
from monitors.domains import domain_unwatch, domain_watch
from monitors.models import Finding, WatchedDomain
from monitors.visibility import visible_hosts
from notifications import services as notify_services
from notifications.models import Channel, Event

UUID_RE = "[0-9a-fA-F-]{36}"


# --- watched domains --------------------------------------------------------------------------
@extend_schema_view(
    list=extend_schema(summary="Watched domains"),
    retrieve=extend_schema(
        responses={200: WatchedDomainDetailSerializer}, summary="One watched domain, with its registration (RDAP)"
    ),
    create=extend_schema(
        request=WatchedDomainCreateSerializer, responses={201: WatchedDomainSerializer}, summary="Watch a domain (CT)"
    ),
    partial_update=extend_schema(request=WatchedDomainUpdateSerializer, summary="Change sub-domains / auto-watch"),
    destroy=extend_schema(summary="Stop watching (history is kept)"),
)
class DomainViewSet(
    V1Mixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = WatchedDomainSerializer
    lookup_url_kwarg = "id"
    lookup_value_regex = UUID_RE
    ordering_fields = ["created_at", "domain"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    required_scopes = {"create": Scope.ENROL}
    queryset = WatchedDomain.objects.none()

    def get_queryset(self) -> QuerySet[WatchedDomain]:
        return WatchedDomain.objects.for_team(self.caller.team).filter(removed_at=None)

    def get_object(self) -> WatchedDomain:
        return get_for_team_or_404(self.get_queryset(), self.caller.team, self.kwargs["id"])

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(WatchedDomainDetailSerializer(self.get_object()).data)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = WatchedDomainCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            watched = domain_watch(team=self.caller.team, added_by=self.caller.user, **data.validated_data)
        except InvalidName as exc:
            raise exceptions.ValidationError({"domain": [str(exc)]}) from None
        return Response(WatchedDomainSerializer(watched).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        watched = self.get_object()
        data = WatchedDomainUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = {
            "include_subdomains": data.validated_data.get("include_subdomains", watched.include_subdomains),
            "auto_watch": data.validated_data.get("auto_watch", watched.auto_watch),
        }
        watched = domain_watch(team=self.caller.team, domain=watched.domain, **values)
        return Response(WatchedDomainSerializer(watched).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        domain_unwatch(watched_domain=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={200: DiscoveredHostSerializer(many=True)}, summary="Hosts discovered under it (CT)")
    @action(detail=True, methods=["get"])
    def hosts(self, request: Request, id: str) -> Response:
        domain = self.get_object()
        hosts = visible_hosts(domain).order_by("name", "id")[:1000]
        return Response(DiscoveredHostSerializer(hosts, many=True).data)

    @extend_schema(responses={200: CertificateSerializer(many=True)}, summary="Certificate history from CT")
    @action(detail=True, methods=["get"])
    def certificates(self, request: Request, id: str) -> Response:
        domain = self.get_object()
        try:
            qs = certificates_for(domain.domain, include_subdomains=domain.include_subdomains, one_per_issuance=False)
        except InvalidName as exc:
            raise exceptions.ValidationError({"domain": str(exc)}) from None
        # Only what the team may see (read from a CT log, or its own scans and uploads), one row
        # per issuance among those.
        visible = one_per_issuance(team_certificates(self.caller.team).filter(id__in=qs.values("id")))
        visible = visible.order_by("-not_before", "-id")
        rows = list(visible[:500])  # the newest 500; the certificates endpoint pages and filters further
        return Response(CertificateSerializer(rows, many=True).data)


# --- findings and events ----------------------------------------------------------------------
FINDING_FILTERS = [
    OpenApiParameter("state", OpenApiTypes.STR, enum=["open", "resolved", "all"], description="default open"),
    OpenApiParameter("code", OpenApiTypes.STR, description="a stable finding code, e.g. renewal_due"),
    OpenApiParameter("severity", OpenApiTypes.STR, enum=["info", "warning", "error", "critical"]),
    OpenApiParameter("server", OpenApiTypes.UUID),
]


@extend_schema_view(
    list=extend_schema(parameters=FINDING_FILTERS, summary="Findings"), retrieve=extend_schema(summary="One finding")
)
class FindingViewSet(V1Mixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = FindingSerializer
    lookup_url_kwarg = "id"
    lookup_value_regex = UUID_RE
    ordering_fields = ["created_at", "first_seen", "last_seen", "severity"]
    queryset = Finding.objects.none()

    def get_queryset(self) -> QuerySet[Finding]:
        qs = Finding.objects.for_team(self.caller.team).select_related("server")
        if self.action != "list":
            return qs
        params = self.request.query_params
        state = params.get("state", "open")
        if state == "open":
            qs = qs.filter(resolved_at=None)
        elif state == "resolved":
            qs = qs.exclude(resolved_at=None)
        elif state != "all":
            raise exceptions.ValidationError({"state": "one of open, resolved, all"})
        if params.get("code"):
            qs = qs.filter(code=params["code"])
        if params.get("severity"):
            qs = qs.filter(severity=params["severity"])
        if params.get("server"):
            try:
                qs = qs.filter(server__uuid=params["server"])
            except DjangoValidationError:
                raise exceptions.ValidationError({"server": "a server id (UUID)"}) from None
        return qs

    def get_object(self) -> Finding:
        return get_for_team_or_404(self.get_queryset(), self.caller.team, self.kwargs["id"])


EVENT_FILTERS = [
    OpenApiParameter("kind", OpenApiTypes.STR),
    OpenApiParameter("severity", OpenApiTypes.STR, enum=["info", "warning", "error", "critical"]),
    OpenApiParameter("since", OpenApiTypes.DATETIME),
]


@extend_schema_view(
    list=extend_schema(parameters=EVENT_FILTERS, summary="Events"), retrieve=extend_schema(summary="One event")
)
class EventViewSet(V1Mixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = EventSerializer
    lookup_url_kwarg = "id"
    lookup_value_regex = UUID_RE
    ordering_fields = ["created_at", "occurred_at"]
    queryset = Event.objects.none()

    def get_queryset(self) -> QuerySet[Event]:
        qs = Event.objects.for_team(self.caller.team)
        params = self.request.query_params
        if params.get("kind"):
            qs = qs.filter(kind=params["kind"])
        if params.get("severity"):
            qs = qs.filter(severity=params["severity"])
        since = datetime_param(self.request, "since")
        if since is not None:
            qs = qs.filter(occurred_at__gte=since)
        return qs

    def get_object(self) -> Event:
        return get_for_team_or_404(self.get_queryset(), self.caller.team, self.kwargs["id"])


# --- notification channels --------------------------------------------------------------------
@extend_schema_view(
    list=extend_schema(summary="Notification channels"),
    retrieve=extend_schema(summary="One channel"),
    create=extend_schema(request=ChannelCreateSerializer, responses={201: ChannelSerializer}, summary="Add a channel"),
    partial_update=extend_schema(request=ChannelUpdateSerializer, summary="Re-enable a channel"),
    destroy=extend_schema(summary="Delete a channel (its delivery history stays)"),
)
class ChannelViewSet(
    V1Mixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = ChannelSerializer
    lookup_url_kwarg = "id"
    lookup_value_regex = UUID_RE
    ordering_fields = ["created_at", "name"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    required_scopes = {"create": "admin", "partial_update": "admin", "destroy": "admin", "test": "admin"}
    queryset = Channel.objects.none()

    def get_queryset(self) -> QuerySet[Channel]:
        return Channel.objects.for_team(self.caller.team).filter(deleted_at=None)

    def get_object(self) -> Channel:
        return get_for_team_or_404(self.get_queryset(), self.caller.team, self.kwargs["id"])

    def get_serializer_context(self) -> dict[str, Any]:
        # Channel URLs are credentials: admins (with a manage key) see them masked, others not.
        return {**super().get_serializer_context(), "show_secrets": self.caller.is_admin()}

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = ChannelCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        channel = notify_services.channel_create(team=self.caller.team, **data.validated_data)
        return Response(self.get_serializer(channel).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        channel = self.get_object()
        data = ChannelUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data["enabled"]:
            notify_services.channel_enable(channel=channel)
        else:
            notify_services.channel_disable(channel=channel, reason="disabled through the API")
        return Response(self.get_serializer(self.get_object()).data)

    def perform_destroy(self, instance: Channel) -> None:
        notify_services.channel_delete(channel=instance)

    @extend_schema(
        request=None,
        responses={
            202: OpenApiResponse(description="a test message is on its way"),
            429: OpenApiResponse(description="the channel's rate limit is spent (Retry-After)"),
        },
        summary="Send a test message (counts against the channel's rate limit)",
    )
    @action(detail=True, methods=["post"])
    def test(self, request: Request, id: str) -> Response:
        try:
            delivery = notify_services.channel_send_test(channel=self.get_object())
        except notify_services.ChannelRateLimited as error:
            raise exceptions.Throttled(wait=error.retry_after, detail=str(error)) from None
        return Response({"delivery": str(delivery.uuid)}, status=status.HTTP_202_ACCEPTED)


# --- API keys and the audit log ---------------------------------------------------------------
@extend_schema_view(
    list=extend_schema(summary="API keys of the team (never their secrets)"),
    retrieve=extend_schema(summary="One API key"),
    create=extend_schema(
        request=ApiKeyCreateSerializer,
        responses={201: ApiKeyCreatedSerializer},
        summary="Create a key (the secret is shown once)",
    ),
    destroy=extend_schema(summary="Revoke a key"),
)
class ApiKeyViewSet(
    V1Mixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = ApiKeySerializer
    lookup_url_kwarg = "id"
    lookup_value_regex = UUID_RE
    ordering_fields = ["created_at", "last_used_at"]
    queryset = ApiKey.objects.none()

    def get_queryset(self) -> QuerySet[ApiKey]:
        return ApiKey.objects.for_team(self.caller.team).select_related("user")

    def get_object(self) -> ApiKey:
        return get_for_team_or_404(self.get_queryset(), self.caller.team, self.kwargs["id"])

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = ApiKeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            # ScopePermission already wants `manage` here; apikey_create keeps the rule that a key
            # cannot make a key with more scopes than its own, whatever the scopes become.
            new = apikey_create(
                team=self.caller.team,
                user=self.caller.user,
                name=data.validated_data["name"],
                scopes=data.validated_data["scopes"],
                ip=client_ip(request),
                source="api",
                parent=self.caller.api_key,
            )
        except DjangoPermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc)) from None
        body = ApiKeySerializer(new.api_key).data
        body["secret"] = new.secret
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            apikey_revoke(api_key=self.get_object(), by=self.caller.user, ip=client_ip(request))
        except DjangoPermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(list=extend_schema(summary="Audit log of API keys and claims"))
class AuditViewSet(V1Mixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = AuditEntrySerializer
    ordering_fields = ["created_at"]
    queryset = AuditEntry.objects.none()

    def get_queryset(self) -> QuerySet[AuditEntry]:
        return AuditEntry.objects.for_team(self.caller.team).select_related("user")


# --- team members ---------------------------------------------------------------------------
class MemberCursor(Cursor):
    ordering = ("created_at", "id")


@extend_schema_view(list=extend_schema(summary="Members of the team"))
class MemberViewSet(V1Mixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = MemberSerializer
    pagination_class = MemberCursor
    filter_backends: list[Any] = []
    required_scopes = {"invite": "admin"}
    queryset = Membership.objects.none()

    def get_queryset(self) -> QuerySet[Membership]:
        return Membership.objects.filter(team=self.caller.team).select_related("user")

    @extend_schema(request=InviteSerializer, responses={201: InvitationSerializer}, summary="Invite someone (admins)")
    @action(detail=False, methods=["post"])
    def invite(self, request: Request) -> Response:
        data = InviteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            invitation = invitation_create(team=self.caller.team, by=self.caller.user, **data.validated_data)
        except DjangoPermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc)) from None
        except DjangoValidationError as exc:
            raise exceptions.ValidationError({"email": exc.messages}) from None
        return Response(InvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)


# --- expiry -------------------------------------------------------------------------------------
class ExpiryView(V1Mixin, APIView):
    pagination_class = None

    @extend_schema(
        parameters=[OpenApiParameter("host", OpenApiTypes.STR, required=True, description="host or host:port")],
        responses={200: ExpirationSerializer},
        summary="When does this expire? (every IP of a watched server)",
    )
    def get(self, request: Request) -> Response:
        host = request.query_params.get("host", "")
        if not host:
            raise exceptions.ValidationError({"host": "required"})
        try:
            report = expiration_report(
                team=self.caller.team, target=host, now=timezone.now(), api_key=self.caller.api_key
            )
        except InvalidTarget as exc:
            raise exceptions.ValidationError({"host": str(exc)}) from None
        if report is None:
            raise exceptions.NotFound("This team does not watch that server.")
        return Response(report)


# --- exports ------------------------------------------------------------------------------------
def _download(body: str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


class ServersCsvView(V1Mixin, APIView):
    pagination_class = None

    @extend_schema(
        responses={(200, "text/csv"): OpenApiTypes.STR}, summary="Servers and what each address presents (CSV)"
    )
    def get(self, request: Request) -> HttpResponse:
        return _download(exports.servers_csv(self.caller.team), "text/csv; charset=utf-8", "keychest-servers.csv")


class CertificatesCsvView(V1Mixin, APIView):
    pagination_class = None

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR}, summary="The team's certificates (CSV)")
    def get(self, request: Request) -> HttpResponse:
        return _download(
            exports.certificates_csv(self.caller.team), "text/csv; charset=utf-8", "keychest-certificates.csv"
        )


class CalendarView(V1Mixin, APIView):
    pagination_class = None

    @extend_schema(responses={(200, "text/calendar"): OpenApiTypes.STR}, summary="Renewal dates of the team (ICS)")
    def get(self, request: Request) -> HttpResponse:
        team = self.caller.team
        body = exports.ics_render(
            exports.calendar_events([team], now=timezone.now()),
            name=f"KeyChest renewals: {team.name}",
            now=timezone.now(),
        )
        return _download(body, "text/calendar; charset=utf-8", "keychest-renewals.ics")


class CalendarUrlView(V1Mixin, APIView):
    pagination_class = None

    @extend_schema(
        request=None,
        responses={200: OpenApiResponse(description='{"url": "..."}: the secret address calendar apps subscribe to')},
        summary="Your secret calendar address (all your teams; sessions only)",
    )
    def get(self, request: Request) -> Response:
        # The feed covers every team of the user, and a key acts for one team only (security
        # finding 3): keys get the team's own calendar instead.
        if self.caller.api_key is not None:
            raise exceptions.PermissionDenied(
                "This address covers all your teams; a key reads its own team's /api/v1/exports/calendar.ics.",
                code="session_only",
            )
        return Response({"url": exports.calendar_feed_url(self.caller.user)})


class CalendarFeedView(APIView):
    """The subscribed calendar: the token in the address is the only credential."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        auth=[], responses={(200, "text/calendar"): OpenApiTypes.STR, 404: None}, summary="Subscribed calendar feed"
    )
    def get(self, request: Request, token: str) -> HttpResponse:
        feed = CalendarFeed.objects.select_related("user").filter(token=token).first()
        if feed is None or not feed.user.is_active:
            raise Http404("No such calendar")
        teams = list(Team.objects.for_user(feed.user))
        now = timezone.now()
        body = exports.ics_render(exports.calendar_events(teams, now=now), name="KeyChest renewals", now=now)
        response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
        response["Cache-Control"] = "private, max-age=900"
        return response
