"""Shapes of /api/v1. Public identifiers are UUIDs (`id`), certificates are named by SHA-256."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.models import ApiKey, AuditEntry, Scope
from api.selectors import certificate_sources
from certificates.models import Certificate
from kcproto.x509 import MAX_CERTIFICATE_BYTES
from keychest.accounts.models import Membership, Role
from monitors.models import (
    DiscoveredHost,
    DomainRegistration,
    Finding,
    Protocol,
    ScanResult,
    Server,
    TimelineEntry,
    WatchedDomain,
)
from monitors.registrations import registration_for_name
from notifications.apprise_urls import InvalidAppriseUrl, apprise_url_check
from notifications.models import Channel, ChannelKind, Event, EventKind


class ServerSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    label = serializers.CharField(read_only=True)  # type: ignore[assignment] # the field, not Field.label
    open_findings = serializers.IntegerField(read_only=True, default=0)

    class Meta:
        model = Server
        fields = [
            "id",
            "host",
            "port",
            "protocol",
            "label",
            "pinned_ip",
            "scan_interval",
            "paused",
            "tags",
            "due_fraction",
            "overdue_fraction",
            "last_scan_at",
            "next_scan_at",
            "dns_addresses",
            "dns_error",
            "open_findings",
            "created_at",
        ]
        read_only_fields = [
            "paused",
            "last_scan_at",
            "next_scan_at",
            "dns_addresses",
            "dns_error",
            "created_at",
        ]


class ServerCreateSerializer(serializers.Serializer):
    host = serializers.CharField(max_length=300, help_text="host, host:port, [v6]:port or a URL")
    port = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=65535)
    protocol = serializers.ChoiceField(choices=Protocol.choices, required=False, allow_null=True)
    pinned_ip = serializers.IPAddressField(required=False, allow_null=True)
    scan_interval = serializers.IntegerField(required=False, allow_null=True, min_value=300, max_value=30 * 86400)
    tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False, max_length=20)
    due_fraction = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)
    overdue_fraction = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)


class ServerUpdateSerializer(serializers.Serializer):
    pinned_ip = serializers.IPAddressField(required=False, allow_null=True)
    scan_interval = serializers.IntegerField(required=False, min_value=300, max_value=30 * 86400)
    tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False, max_length=20)
    due_fraction = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)
    overdue_fraction = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=1.0)


class BulkAddSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=200_000, help_text="one host[:port] per line; # comments")
    protocol = serializers.ChoiceField(choices=Protocol.choices, required=False, allow_null=True)
    tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False, max_length=20)


class BulkErrorSerializer(serializers.Serializer):
    line_number = serializers.IntegerField()
    line = serializers.CharField()
    message = serializers.CharField()


class BulkResultSerializer(serializers.Serializer):
    created = ServerSerializer(many=True)
    existing = ServerSerializer(many=True)
    errors = BulkErrorSerializer(many=True)  # type: ignore[assignment] # a declared field, not Serializer.errors


class ScanResultSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)

    class Meta:
        model = ScanResult
        fields = [
            "id",
            "address",
            "current",
            "error_code",
            "error_message",
            "leaf_sha256",
            "chain_sha256",
            "subject",
            "issuer",
            "names",
            "not_before",
            "not_after",
            "tls_version",
            "cipher",
            "legacy_tls",
            "trusted",
            "first_seen",
            "last_seen",
        ]


class FindingSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    server = serializers.UUIDField(source="server.uuid", read_only=True)
    server_label = serializers.CharField(source="server.label", read_only=True)
    is_open = serializers.BooleanField(read_only=True)

    class Meta:
        model = Finding
        fields = [
            "id",
            "server",
            "server_label",
            "code",
            "severity",
            "message",
            "address",
            "details",
            "first_seen",
            "last_seen",
            "resolved_at",
            "is_open",
        ]


class TimelineSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)

    class Meta:
        model = TimelineEntry
        fields = ["id", "address", "kind", "summary", "details", "at"]


class WatchedDomainSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)

    class Meta:
        model = WatchedDomain
        fields = ["id", "domain", "include_subdomains", "auto_watch", "created_at"]
        read_only_fields = ["created_at"]


class DomainRegistrationSerializer(serializers.ModelSerializer):
    """Public registration data (RDAP) of the watched domain's registered domain."""

    registered_domain = serializers.CharField(source="domain", read_only=True)
    days_left = serializers.SerializerMethodField()
    level = serializers.SerializerMethodField(
        help_text="expired, error (<= 14 days), warning (<= 28), due (<= 84), ok, unknown"
    )

    class Meta:
        model = DomainRegistration
        fields = [
            "registered_domain",
            "status",
            "expires_at",
            "days_left",
            "level",
            "registered_at",
            "changed_at",
            "registrar",
            "statuses",
            "rdap_server",
            "last_checked_at",
            "next_check_at",
            "last_error",
        ]
        read_only_fields = fields

    def get_days_left(self, obj: DomainRegistration) -> int | None:
        return obj.days_left(self.context["now"])

    def get_level(self, obj: DomainRegistration) -> str:
        return obj.level(self.context["now"])


class WatchedDomainDetailSerializer(WatchedDomainSerializer):
    """One watched domain with its registration (null until the first RDAP check)."""

    registration = serializers.SerializerMethodField()

    class Meta(WatchedDomainSerializer.Meta):
        fields = [*WatchedDomainSerializer.Meta.fields, "registration"]

    @extend_schema_field(DomainRegistrationSerializer(allow_null=True))
    def get_registration(self, obj: WatchedDomain) -> dict[str, Any] | None:

        registration = registration_for_name(obj.domain)
        if registration is None:
            return None
        return DomainRegistrationSerializer(registration, context={"now": timezone.now()}).data


class WatchedDomainCreateSerializer(serializers.Serializer):
    domain = serializers.CharField(max_length=253)
    include_subdomains = serializers.BooleanField(default=True)
    auto_watch = serializers.BooleanField(default=False)


class WatchedDomainUpdateSerializer(serializers.Serializer):
    include_subdomains = serializers.BooleanField(required=False)
    auto_watch = serializers.BooleanField(required=False)


class DiscoveredHostSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)

    class Meta:
        model = DiscoveredHost
        fields = ["id", "name", "first_seen_at", "last_seen_at", "watched_at"]


class CertificateSerializer(serializers.ModelSerializer):
    renewal_at = serializers.DateTimeField(read_only=True)
    seen_by = serializers.SerializerMethodField(
        help_text="scan (your servers presented it), upload (you uploaded it), ct (read from a CT log)"
    )

    class Meta:
        model = Certificate
        fields = [
            "sha256",
            "subject",
            "issuer",
            "serial",
            "not_before",
            "not_after",
            "renewal_at",
            "key_type",
            "key_size",
            "signature_algorithm",
            "is_ca",
            "is_precertificate",
            "first_seen_at",
            "seen_by",
        ]

    def get_seen_by(self, obj: Certificate) -> list[str]:
        return certificate_sources(obj)

    def to_representation(self, instance: Certificate) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["renewal_at"] = serializers.DateTimeField().to_representation(instance.renewal_at())
        return data


def certificate_pem(certificate: Certificate) -> str | None:
    if not certificate.der:
        return None
    return x509.load_der_x509_certificate(bytes(certificate.der)).public_bytes(Encoding.PEM).decode()


class CertificateDetailSerializer(CertificateSerializer):
    names = serializers.SerializerMethodField()
    pem = serializers.SerializerMethodField()
    chain = serializers.SerializerMethodField()
    sources = serializers.SerializerMethodField()

    class Meta(CertificateSerializer.Meta):
        fields = [*CertificateSerializer.Meta.fields, "names", "pem", "chain", "sources"]

    def get_names(self, obj: Certificate) -> list[str]:
        return sorted(n.name for n in obj.names.all())

    def get_pem(self, obj: Certificate) -> str | None:
        return certificate_pem(obj)

    def get_chain(self, obj: Certificate) -> list[dict[str, Any]]:
        """The chain servers of this team presented with it (issuer first), when a scan saw one."""
        chain: list[Certificate] = self.context.get("chain", [])
        return [
            {
                "sha256": c.sha256,
                "subject": c.subject,
                "issuer": c.issuer,
                "not_after": c.not_after,
                "pem": certificate_pem(c),
            }
            for c in chain
        ]

    def get_sources(self, obj: Certificate) -> list[str]:
        return self.context.get("sources", [])


class CertificateUploadSerializer(serializers.Serializer):
    certificate = serializers.CharField(max_length=MAX_CERTIFICATE_BYTES, help_text="one certificate, PEM")


class EventSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)

    class Meta:
        model = Event
        fields = ["id", "kind", "severity", "subject", "payload", "occurred_at"]


class ChannelSerializer(serializers.ModelSerializer):
    """A channel. Its URLs are credentials: admins see them masked, everyone else sees "" (the
    view sets `show_secrets` in the context; without it nothing shows)."""

    id = serializers.UUIDField(source="uuid", read_only=True)
    url = serializers.SerializerMethodField(help_text="Webhook and Slack channels: the URL, masked; admins only")
    apprise_url = serializers.SerializerMethodField(
        help_text="Apprise channels: the URL with its tokens shortened; admins only"
    )

    def get_url(self, channel: Channel) -> str:
        return channel.url_masked() if self.context.get("show_secrets") else ""

    def get_apprise_url(self, channel: Channel) -> str:
        return channel.apprise_url_masked if self.context.get("show_secrets") else ""

    class Meta:
        model = Channel
        fields = [
            "id",
            "kind",
            "name",
            "url",
            "apprise_url",
            "email_all_members",
            "email_addresses",
            "event_kinds",
            "rate_limit_per_hour",
            "grouping_seconds",
            "enabled",
            "disabled_reason",
            "created_at",
        ]
        read_only_fields = ["enabled", "disabled_reason", "created_at"]


class ChannelCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ChannelKind.choices)
    name = serializers.CharField(max_length=100)
    url = serializers.URLField(max_length=2000, required=False, allow_blank=True, default="")
    apprise_url = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, default="", write_only=True,
        help_text="Apprise channels: the service URL (tgram://…, msteams://…, ntfys://…); stored encrypted",
    )  # fmt: skip
    email_all_members = serializers.BooleanField(default=True)
    email_addresses = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")
    event_kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=EventKind.choices), required=False, default=list
    )
    rate_limit_per_hour = serializers.IntegerField(min_value=1, max_value=3600, default=20)
    grouping_seconds = serializers.IntegerField(min_value=0, max_value=86400, default=60)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["kind"] in (ChannelKind.WEBHOOK, ChannelKind.SLACK) and not attrs.get("url"):
            raise serializers.ValidationError({"url": "a webhook or Slack channel needs a URL"})
        if attrs["kind"] == ChannelKind.APPRISE:
            try:
                apprise_url_check(attrs.get("apprise_url") or "")
            except InvalidAppriseUrl as error:
                raise serializers.ValidationError({"apprise_url": str(error)}) from None
        return attrs


class ChannelUpdateSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(help_text="true re-enables a channel disabled after failures")


class ApiKeySerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    user = serializers.EmailField(source="user.email", read_only=True)
    prefix = serializers.CharField(source="display_prefix", read_only=True)
    confirmed = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "user",
            "scopes",
            "source",
            "confirmed",
            "created_at",
            "last_used_at",
            "last_used_ip",
            "revoked_at",
        ]

    def get_confirmed(self, obj: ApiKey) -> bool:
        return obj.confirmed_at is not None


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices), min_length=1, max_length=3)


class ApiKeyCreatedSerializer(ApiKeySerializer):
    secret = serializers.CharField(read_only=True, help_text="shown this once, never again")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "secret"]


class AuditEntrySerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    user = serializers.EmailField(source="user.email", read_only=True, default=None)

    class Meta:
        model = AuditEntry
        fields = ["id", "action", "user", "key_prefix", "ip", "detail", "created_at"]


class MemberSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="uuid", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "email", "role", "created_at"]


class InviteSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)


class InvitationSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="uuid")
    email = serializers.EmailField()
    role = serializers.CharField()
    created_at = serializers.DateTimeField()
