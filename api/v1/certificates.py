"""/api/v1/certificates: the certificates a team can see, filtered; detail with chain and PEM; upload.

A team sees a certificate of the global store when one of its servers presented it, when it
uploaded it, or when it was read from a CT log and names something under one of the team's
watched domains (api/selectors.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from api.enrolment import CertificateTooLarge, SingleCertificateExpected, certificate_parse_one, certificate_upload
from api.models import Scope
from api.selectors import certificate_sources, team_certificates
from api.v1.base import Cursor, V1Mixin, datetime_param
from api.v1.serializers import (
    CertificateDetailSerializer,
    CertificateSerializer,
    CertificateUploadSerializer,
)
from certificates.models import Certificate
from certificates.services import certificates_for
from kcproto.names import InvalidName
from kcproto.x509 import CertificateParseError
from monitors.models import ScanResult


class CertificateCursor(Cursor):
    ordering = ("-not_before", "-id")


CERT_FILTERS = [
    OpenApiParameter("domain", OpenApiTypes.STR, description="certificates naming this name or one under it"),
    OpenApiParameter("issuer", OpenApiTypes.STR, description="part of the issuer name"),
    OpenApiParameter("expires_after", OpenApiTypes.DATETIME),
    OpenApiParameter("expires_before", OpenApiTypes.DATETIME),
    OpenApiParameter("expiring_within_days", OpenApiTypes.INT),
    OpenApiParameter("source", OpenApiTypes.STR, enum=["scan", "upload", "ct"]),
    OpenApiParameter("include_expired", OpenApiTypes.BOOL, description="default true"),
]


@extend_schema_view(
    list=extend_schema(parameters=CERT_FILTERS, summary="Certificates the team can see"),
    retrieve=extend_schema(responses=CertificateDetailSerializer, summary="One certificate: names, PEM and chain"),
    create=extend_schema(
        request=CertificateUploadSerializer,
        responses={201: CertificateSerializer, 200: CertificateSerializer},
        summary="Upload one certificate (PEM)",
    ),
)
class CertificateViewSet(
    V1Mixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    serializer_class = CertificateSerializer
    pagination_class = CertificateCursor
    lookup_url_kwarg = "sha256"
    lookup_value_regex = "[0-9a-fA-F]{64}"
    ordering_fields = ["not_after", "not_before", "first_seen_at"]
    required_scopes = {"create": Scope.ENROL}
    queryset = Certificate.objects.none()

    def get_queryset(self) -> QuerySet[Certificate]:
        qs = team_certificates(self.caller.team)
        params = self.request.query_params
        if params.get("domain"):
            try:
                qs = qs.filter(id__in=certificates_for(params["domain"], one_per_issuance=False).values("id"))
            except InvalidName as exc:
                raise exceptions.ValidationError({"domain": str(exc)}) from None
        if params.get("issuer"):
            qs = qs.filter(issuer__icontains=params["issuer"])
        after = datetime_param(self.request, "expires_after")
        if after:
            qs = qs.filter(not_after__gte=after)
        before = datetime_param(self.request, "expires_before")
        if before:
            qs = qs.filter(not_after__lt=before)
        if params.get("expiring_within_days"):
            try:
                days = int(params["expiring_within_days"])
            except ValueError:
                raise exceptions.ValidationError({"expiring_within_days": "a whole number of days"}) from None
            if not 0 <= days <= 3650:
                raise exceptions.ValidationError({"expiring_within_days": "between 0 and 3650"})
            now = timezone.now()
            qs = qs.filter(not_after__gte=now, not_after__lt=now + timedelta(days=days))
        if params.get("include_expired", "").lower() in ("0", "false", "no"):
            qs = qs.filter(not_after__gt=timezone.now())
        source = params.get("source")
        if source:
            if source not in ("scan", "upload", "ct"):
                raise exceptions.ValidationError({"source": "one of scan, upload, ct"})
            qs = qs.filter(ct_logged=True) if source == "ct" else qs.filter(**{f"from_{source}": True})
        return qs

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        sha256 = self.kwargs["sha256"].lower()
        cert = team_certificates(self.caller.team).filter(sha256=sha256).prefetch_related("names").first()
        if cert is None:
            raise exceptions.NotFound()
        chain: list[Certificate] = []
        servers: list[str] = []
        results = (
            ScanResult.objects.filter(team=self.caller.team, leaf_sha256=sha256)
            .select_related("server")
            .order_by("-last_seen", "-id")[:20]
        )
        for result in results:
            if result.server.label not in servers:
                servers.append(result.server.label)
        latest = results[0] if results else None
        if latest is not None:
            others = [h for h in latest.chain_sha256 if h != sha256]
            by_hash = {c.sha256: c for c in Certificate.objects.filter(sha256__in=others)}
            chain = [by_hash[h] for h in others if h in by_hash]
        sources = [*certificate_sources(cert), *(f"server:{label}" for label in servers)]
        return Response(CertificateDetailSerializer(cert, context={"chain": chain, "sources": sources}).data)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = CertificateUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            parsed = certificate_parse_one(data.validated_data["certificate"])
        except SingleCertificateExpected as exc:
            raise exceptions.ValidationError({"certificate": [f"single-cert-expected: {exc}"]}) from None
        except CertificateTooLarge as exc:
            raise exceptions.ValidationError({"certificate": [str(exc)]}) from None
        except CertificateParseError as exc:
            raise exceptions.ValidationError({"certificate": [str(exc)]}) from None
        upload = certificate_upload(
            team=self.caller.team, der=parsed.der, user=self.caller.user, api_key=self.caller.api_key
        )
        return Response(
            CertificateSerializer(upload.certificate).data,
            status=status.HTTP_201_CREATED if upload.created else status.HTTP_200_OK,
        )
