"""The /api/v1.0 routes existing scripts already call; shapes and statuses kept exactly.

Statuses: `created`, `success`, `not-allowed`, `too-many`, `invalid-domain`, `not-registered`,
`already-inserted`, `single-cert-expected` (see PRODUCT.md), plus `invalid-email`.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.access import ApiKeyAuthentication, ApiThrottle, Caller, caller_of
from api.enrolment import (
    CertificateTooLarge,
    HoldBudgetSpent,
    SingleCertificateExpected,
    certificate_parse_one,
    certificate_upload,
    enrolment_hold_certificate,
    enrolment_hold_server,
)
from api.errors import v10_exception_handler
from api.expiry import expiration_report
from api.models import Scope
from api.services import claim_create
from kcproto.targets import InvalidTarget, parse_target
from kcproto.x509 import MAX_CERTIFICATE_BYTES, CertificateParseError
from keychest.ratelimit import client_ip
from monitors.services import AlreadyWatched, server_enrol, target_refusal


class CompatView(APIView):
    """Key-authenticated views answering in the v1.0 shapes."""

    authentication_classes = [ApiKeyAuthentication]
    throttle_classes = [ApiThrottle]
    allows_unconfirmed = True

    def get_exception_handler(self) -> Any:
        return v10_exception_handler


class StatusSerializer(serializers.Serializer):
    status = serializers.CharField()


class PingSerializer(StatusSerializer):
    time = serializers.DateTimeField()
    authenticated = serializers.BooleanField()


@extend_schema(tags=["v1.0"], responses=PingSerializer, summary="Is the API up?")
class PingView(CompatView):
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response(
            {
                "status": "success",
                "time": timezone.now(),
                "authenticated": bool(request.user and request.user.is_authenticated),
            }
        )


class UserSerializer(StatusSerializer):
    user = serializers.EmailField()
    team = serializers.CharField()
    confirmed = serializers.BooleanField()
    scopes = serializers.ListField(child=serializers.CharField())


@extend_schema(tags=["v1.0"], responses=UserSerializer, summary="Who the key belongs to")
class UserView(CompatView):
    def get(self, request: Request) -> Response:
        caller = caller_of(request)
        if caller is None:
            return Response({"status": "not-registered"}, status=401)
        key = caller.api_key
        return Response(
            {
                "status": "success",
                "user": caller.user.email,
                "team": caller.team.name,
                "confirmed": caller.confirmed,
                "scopes": key.scopes if key else ["read", "enrol", "manage"],
            }
        )


class ClaimRequestSerializer(serializers.Serializer):
    email = serializers.CharField(max_length=254)
    api_key = serializers.CharField(max_length=128, required=False)


class ClaimResponseSerializer(StatusSerializer):
    user = serializers.CharField(required=False)
    api_key = serializers.CharField(required=False)


def _claim_response(request: Request, email: str, secret: str | None) -> Response:
    result = claim_create(
        email=email, secret=secret, ip=client_ip(request), user_agent=request.META.get("HTTP_USER_AGENT", "")
    )
    body: dict[str, Any] = {"status": result.status}
    if result.email:
        body["user"] = result.email
    if result.api_key:
        body["api_key"] = result.api_key
    return Response(body, status=result.http_status)


class ClaimView(CompatView):
    """POST /access/claim: the script chooses the key (16-64 of [A-Za-z0-9-])."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=["v1.0"],
        request=ClaimRequestSerializer,
        responses={
            201: ClaimResponseSerializer,
            200: ClaimResponseSerializer,
            400: StatusSerializer,
            403: StatusSerializer,
            429: StatusSerializer,
        },
        summary="Claim an API key for an email address (its owner confirms by email)",
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = request.data if hasattr(request.data, "get") else {}
        email = data.get("email")
        secret = data.get("api_key")
        if not isinstance(email, str):
            return Response({"status": "invalid-email"}, status=400)
        if secret is not None and not isinstance(secret, str):
            return Response({"status": "invalid-api-key", "user": email}, status=400)
        return _claim_response(request, email, secret or None)


class ClaimGenerateView(CompatView):
    """GET /access/claim/{email}: the server generates the key and shows it this once."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=["v1.0"],
        responses={201: ClaimResponseSerializer, 400: StatusSerializer, 403: StatusSerializer, 429: StatusSerializer},
        summary="Claim a server-generated API key for an email address",
        auth=[],
    )
    def get(self, request: Request, email: str) -> Response:
        return _claim_response(request, email, None)


def _refusal(caller: Caller | None, scope: str) -> tuple[dict[str, Any], int] | None:
    if caller is None:
        return {"status": "not-registered"}, 401
    if not caller.can(scope):
        return {"status": "not-allowed", "detail": f"the key needs the {scope} scope"}, 403
    return None


def _forbidden_unless(request: Request, scope: str) -> Response | None:
    refused = _refusal(caller_of(request), scope)
    return Response(refused[0], status=refused[1]) if refused is not None else None


class ServerAddSerializer(serializers.Serializer):
    domain = serializers.CharField(help_text="host, or host:port (default port 443)")


class ServerAddResponseSerializer(StatusSerializer):
    id = serializers.UUIDField(
        required=False, help_text="the server's id (a held item's id becomes its server's id on confirmation)"
    )
    key = serializers.CharField(required=False, help_text="host:port, as servers/expiration/{domain} takes it")
    domain = serializers.CharField(required=False)
    port = serializers.IntegerField(required=False)
    pending = serializers.BooleanField(required=False)


@extend_schema(
    tags=["v1.0"],
    request=ServerAddSerializer,
    responses={
        200: ServerAddResponseSerializer,
        400: StatusSerializer,
        401: StatusSerializer,
        403: StatusSerializer,
        429: StatusSerializer,
    },
    summary="Watch a server (host or host:port)",
)
class ServerAddView(CompatView):
    def post(self, request: Request) -> Response:
        caller = caller_of(request)
        body, status = server_add_answer(caller, request.data, client_ip(request))
        return Response(body, status=status)


def server_add_answer(caller: Caller | None, data: Any, ip: str) -> tuple[dict[str, Any], int]:
    """The body and status of POST /servers/add."""
    refused = _refusal(caller, Scope.ENROL)
    if refused is not None:
        return refused
    assert caller is not None
    domain = data.get("domain") if hasattr(data, "get") else None
    if not isinstance(domain, str) or not domain.strip():
        return {"status": "invalid-domain", "detail": "domain is required"}, 400
    try:
        host, port = parse_target(domain)
    except InvalidTarget as exc:
        return {"status": "invalid-domain", "detail": str(exc)}, 400
    if caller.api_key is not None and not caller.api_key.is_confirmed():
        refusal = target_refusal(team=caller.team, host=host)
        if refusal is not None:
            return {"status": "invalid-domain", "detail": refusal}, 400
        try:
            item, created = enrolment_hold_server(api_key=caller.api_key, host=host, port=port or 443, ip=ip)
        except HoldBudgetSpent as exc:
            return {"status": "too-many", "detail": str(exc)}, 429
        # As the original service did, a held item has an `id` and a `key` from the start; the
        # id becomes the server's once the key is confirmed (api.enrolment.enrolments_release).
        return {
            "status": "success" if created else "already-inserted",
            "id": item.uuid,
            "key": f"{host}:{item.port}",
            "domain": host,
            "port": item.port,
            "pending": True,
        }, 200
    try:
        server = server_enrol(team=caller.team, host=host, port=port, added_by=caller.user)
    except InvalidTarget as exc:
        return {"status": "invalid-domain", "detail": str(exc)}, 400
    except AlreadyWatched as exc:
        existing = exc.server
        return {
            "status": "already-inserted",
            "id": existing.uuid,
            "key": f"{existing.host}:{existing.port}",
            "domain": existing.host,
            "port": existing.port,
            "pending": False,
        }, 200
    return {
        "status": "success",
        "id": server.uuid,
        "key": f"{server.host}:{server.port}",
        "domain": server.host,
        "port": server.port,
        "pending": False,
    }, 200


class CertificateAddSerializer(serializers.Serializer):
    certificate = serializers.CharField(help_text="one certificate, PEM")


class CertificateAddResponseSerializer(StatusSerializer):
    certificate_sha256 = serializers.CharField(required=False)
    not_after_utc = serializers.IntegerField(required=False)
    pending = serializers.BooleanField(required=False)


@extend_schema(
    tags=["v1.0"],
    request=CertificateAddSerializer,
    responses={
        200: CertificateAddResponseSerializer,
        400: StatusSerializer,
        401: StatusSerializer,
        403: StatusSerializer,
        413: StatusSerializer,
        429: StatusSerializer,
    },
    summary="Upload one certificate (PEM)",
)
class CertificateAddView(CompatView):
    def post(self, request: Request) -> Response:
        refused = _forbidden_unless(request, Scope.ENROL)
        if refused is not None:
            return refused
        caller = caller_of(request)
        assert caller is not None
        text: Any = request.data.get("certificate") if hasattr(request.data, "get") else None
        if text is not None and hasattr(text, "read"):  # an uploaded file (curl -F certificate=@cert.pem)
            text = text.read(MAX_CERTIFICATE_BYTES + 1)  # one byte more: too large is refused, not cut
        if not isinstance(text, str | bytes) or not text.strip():
            return Response({"status": "invalid-certificate", "detail": "certificate (PEM) is required"}, status=400)
        try:
            parsed = certificate_parse_one(text)
        except CertificateTooLarge as exc:
            return Response({"status": "too-large", "detail": str(exc)}, status=413)
        except SingleCertificateExpected as exc:
            return Response({"status": "single-cert-expected", "detail": str(exc)}, status=400)
        except CertificateParseError as exc:
            return Response({"status": "invalid-certificate", "detail": str(exc)}, status=400)
        not_after = int(parsed.not_after.timestamp())
        if caller.api_key is not None and not caller.api_key.is_confirmed():
            try:
                _item, created = enrolment_hold_certificate(
                    api_key=caller.api_key,
                    der=parsed.der,
                    sha256=parsed.sha256,
                    not_after=parsed.not_after,
                    ip=client_ip(request),
                )
            except HoldBudgetSpent as exc:
                return Response({"status": "too-many", "detail": str(exc)}, status=429)
        else:
            created = certificate_upload(
                team=caller.team, der=parsed.der, user=caller.user, api_key=caller.api_key
            ).created
        return Response(
            {
                "status": "success" if created else "already-inserted",
                "certificate_sha256": parsed.sha256,
                "not_after_utc": not_after,
                "pending": caller.api_key is not None and not caller.api_key.is_confirmed(),
            }
        )


class ExpirationEntrySerializer(serializers.Serializer):
    ip = serializers.CharField()
    port = serializers.IntegerField()
    certificate_sha256 = serializers.CharField(allow_null=True)
    renewal_due = serializers.BooleanField()
    expired = serializers.BooleanField()
    renewal_utc = serializers.IntegerField(allow_null=True, help_text="Unix seconds (UTC)")
    expires_utc = serializers.IntegerField(allow_null=True, help_text="Unix seconds (UTC)")
    last_scan_utc = serializers.IntegerField(allow_null=True, help_text="Unix seconds (UTC)")
    error = serializers.CharField(allow_null=True)


class ExpirationSerializer(StatusSerializer):
    domain = serializers.CharField()
    pending = serializers.BooleanField()
    certificate_found = serializers.BooleanField()
    renewal_due = serializers.BooleanField()
    expired_found = serializers.BooleanField()
    results = ExpirationEntrySerializer(many=True)


@extend_schema(
    tags=["v1.0"],
    responses={200: ExpirationSerializer, 400: StatusSerializer, 401: StatusSerializer, 404: StatusSerializer},
    summary="When do the certificates of a watched server expire (every IP)?",
)
class ExpirationView(CompatView):
    def get(self, request: Request, domain: str) -> Response:
        body, status = expiration_answer(caller_of(request), domain)
        return Response(body, status=status)


def expiration_answer(caller: Caller | None, domain: str) -> tuple[dict[str, Any], int]:
    """The body and status of GET /servers/expiration/{domain}.

    Unconfirmed keys (enrol scope only) may still read the status of what they enrolled.
    """
    if caller is None or caller.confirmed:
        refused = _refusal(caller, Scope.READ)
        if refused is not None:
            return refused
    assert caller is not None
    try:
        report = expiration_report(team=caller.team, target=domain, now=timezone.now(), api_key=caller.api_key)
    except InvalidTarget as exc:
        return {"status": "invalid-domain", "detail": str(exc)}, 400
    if report is None:
        return {"status": "not-found", "detail": "this team does not watch that server"}, 404
    return report, 200
