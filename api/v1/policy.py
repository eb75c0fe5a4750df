"""/api/v1/issuance-policy: what the team expects of new certificates (monitors/issuance.py)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.v1.base import V1Mixin
from monitors.issuance import MAX_POLICY_ENTRIES, issuance_policy_set
from monitors.models import IssuancePolicy


class IssuancePolicySerializer(serializers.Serializer[Any]):
    allowed_issuers = serializers.ListField(
        child=serializers.CharField(max_length=200),
        max_length=MAX_POLICY_ENTRIES,
        default=list,
        help_text="CAA issuer domains (letsencrypt.org) or issuer-name text; empty: any CA.",
    )
    known_keys = serializers.ListField(
        child=serializers.CharField(max_length=200),
        max_length=MAX_POLICY_ENTRIES,
        default=list,
        help_text="Hex SHA-256 of the SubjectPublicKeyInfo of keys the team deploys; empty: any key.",
    )
    check_caa = serializers.BooleanField(
        default=True, help_text="A CA the domain's CAA record does not authorise is unexpected."
    )
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)


def _as_dict(policy: IssuancePolicy | None) -> dict[str, Any]:
    if policy is None:
        return {"allowed_issuers": [], "known_keys": [], "check_caa": True, "updated_at": None}
    return {
        "allowed_issuers": policy.allowed_issuers,
        "known_keys": policy.known_keys,
        "check_caa": policy.check_caa,
        "updated_at": policy.updated_at,
    }


class IssuancePolicyView(V1Mixin, APIView):
    """The team's issuance policy: a CT certificate breaking it raises `unexpected_issuance`."""

    pagination_class = None
    required_scopes = {"unsafe": "admin"}

    @extend_schema(responses={200: IssuancePolicySerializer}, summary="The team's issuance policy")
    def get(self, request: Request) -> Response:
        policy = IssuancePolicy.objects.for_team(self.caller.team).first()
        return Response(IssuancePolicySerializer(_as_dict(policy)).data)

    @extend_schema(
        request=IssuancePolicySerializer,
        responses={200: IssuancePolicySerializer},
        summary="Replace the team's issuance policy (admins and owners)",
    )
    def put(self, request: Request) -> Response:
        data = IssuancePolicySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            policy = issuance_policy_set(team=self.caller.team, **data.validated_data)
        except ValueError as error:
            raise exceptions.ValidationError({"known_keys": str(error)}) from None
        return Response(IssuancePolicySerializer(_as_dict(policy)).data)
