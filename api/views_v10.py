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

from api.access import ApiKeyAuthentication, ApiThrottle, caller_of
from api.errors import v10_exception_handler
from api.services import claim_create
from keychest.ratelimit import client_ip


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
