"""What a team watches: servers (host, port, protocol) and domains (a name and its sub-domains)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.db.models import Q

from events.models import Severity as EventSeverity
from kcproto import renewal
from kcproto.names import reversed_name
from keychest.tenancy import TeamOwnedModel

if TYPE_CHECKING:
    from keychest.accounts.models import Team


class WatchedDomain(TeamOwnedModel):
    """A domain a team watches in Certificate Transparency: the name itself and every sub-domain."""

    # Normalised (lower-case, IDNA A-label, no trailing dot), e.g. "example.com".
    domain = models.CharField(max_length=253)
    include_subdomains = models.BooleanField(default=True)
    # New hosts discovered under this domain become watched servers automatically.
    auto_watch = models.BooleanField(default=False)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    removed_at = models.DateTimeField(null=True, blank=True)
    # The CAA record set that governs this domain (RFC 8659: the closest one up the tree), read
    # from DNS by monitors/issuance.py: which CAs may issue for it. caa_found None: not read yet.
    caa_found = models.BooleanField(null=True, blank=True)
    caa_domain = models.CharField(max_length=253, blank=True)  # where the set was found
    caa_issue = models.JSONField(default=list, blank=True)
    caa_issuewild = models.JSONField(null=True, blank=True)  # None: no issuewild property
    caa_checked_at = models.DateTimeField(null=True, blank=True)
    caa_error = models.CharField(max_length=200, blank=True)
    # Servers enrolled under this domain are scanned by this team agent (agents/).
    agent = models.ForeignKey("agents.Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="domains")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "domain"], condition=Q(removed_at=None), name="watcheddomain_unique_active"
            )
        ]
        ordering = ["domain", "id"]

    def __str__(self) -> str:
        return self.domain

    @classmethod
    def names_query(cls, team: Team) -> Q | None:
        """A filter on `CertificateName` (its `reversed_name`) for every name under the team's
        watched domains; None when the team watches none."""
        query: Q | None = None
        for domain, subdomains in (
            cls.objects.for_team(team).filter(removed_at=None).values_list("domain", "include_subdomains")
        ):
            rev = reversed_name(domain)
            one = Q(reversed_name=rev)
            if subdomains:
                one |= Q(reversed_name__startswith=rev + ".")
            query = one if query is None else query | one
        return query


class IssuancePolicy(TeamOwnedModel):
    """What a team expects of new certificates for its watched domains (at most one per team).

    A certificate logged in CT that breaks it raises an `unexpected_issuance` event besides the
    usual `certificate_issued`, so a channel can carry only the surprises."""

    # CAA issuer domains ("letsencrypt.org") or text of issuer names ("example corp"), lower-case.
    allowed_issuers = models.JSONField(default=list, blank=True)
    # Hex SHA-256 of the SubjectPublicKeyInfo of keys the team deploys.
    known_keys = models.JSONField(default=list, blank=True)
    # A CA the domain's own CAA record does not authorise is unexpected (on unless switched off).
    check_caa = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team"], name="issuancepolicy_one_per_team")]

    def __str__(self) -> str:
        return f"issuance policy of team {self.team_id}"


class DiscoveredHost(TeamOwnedModel):
    """A host name seen in a certificate under a watched domain (sub-domain discovery)."""

    watched_domain = models.ForeignKey(WatchedDomain, on_delete=models.CASCADE, related_name="discovered_hosts")
    name = models.CharField(max_length=253)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    # Set when the host became a watched server (by hand or by auto-watch).
    watched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["watched_domain", "name"], name="discoveredhost_unique_name")]
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


# --- Watched servers, scan results, findings --------------------------------------------------
# Rules about one object live here as side-effect-free methods; writes live in services.py.


class Protocol(models.TextChoices):
    TLS = "tls", "TLS (implicit)"
    SMTP = "smtp", "SMTP STARTTLS"
    IMAP = "imap", "IMAP STARTTLS"
    POP3 = "pop3", "POP3 STLS"
    FTP = "ftp", "FTP AUTH TLS"
    LDAP = "ldap", "LDAP StartTLS"
    XMPP = "xmpp", "XMPP STARTTLS"
    POSTGRES = "postgres", "PostgreSQL SSL"


# One severity scale for findings and events (re-exported: monitors.models.Severity).
Severity = EventSeverity


DEFAULT_SCAN_INTERVAL = 8 * 3600
DNS_REFRESH_SECONDS = 2 * 3600


class TeamCABundle(TeamOwnedModel):
    """PEM certificates of a team's private CAs, trusted for that team's servers only."""

    name = models.CharField(max_length=100)
    pem = models.TextField()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class TeamScanPolicy(TeamOwnedModel):
    """A team's overrides of the renewal thresholds (fractions of each certificate's lifetime)."""

    due_fraction = models.FloatField(null=True, blank=True)
    overdue_fraction = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team"], name="teamscanpolicy_one_per_team")]


def effective_thresholds(
    server_due: float | None, server_overdue: float | None, team_due: float | None, team_overdue: float | None
) -> tuple[float | None, float | None]:
    """(due, overdue) fractions: the server's own, else the team's, else None (the defaults)."""
    return (
        server_due if server_due is not None else team_due,
        server_overdue if server_overdue is not None else team_overdue,
    )


class Server(TeamOwnedModel):
    """A watched endpoint: host (normalised), port and protocol (implicit TLS or a STARTTLS kind)."""

    host = models.CharField(max_length=253)
    port = models.PositiveIntegerField(default=443)
    protocol = models.CharField(max_length=10, choices=Protocol.choices, default=Protocol.TLS)
    # Scan this address instead of resolving the host (SNI and hostname checks still use host).
    pinned_ip = models.GenericIPAddressField(null=True, blank=True)
    scan_interval = models.PositiveIntegerField(default=DEFAULT_SCAN_INTERVAL, help_text="seconds")
    paused = models.BooleanField(default=False)
    removed_at = models.DateTimeField(null=True, blank=True)
    tags = models.JSONField(default=list, blank=True)
    ca_bundle = models.ForeignKey(TeamCABundle, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # Scanned by this team agent inside the team's network, never by the SaaS itself (agents/).
    agent = models.ForeignKey("agents.Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="servers")
    # Per-server overrides of the renewal thresholds; None falls back to the team, then 1/3, 1/6.
    due_fraction = models.FloatField(null=True, blank=True)
    overdue_fraction = models.FloatField(null=True, blank=True)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Scheduling: due when next_scan_at <= now; a claim holds the row until claimed_until.
    next_scan_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_scan_at = models.DateTimeField(null=True, blank=True)
    last_scan_ms = models.PositiveIntegerField(null=True, blank=True)
    # The TLS 1.0/1.1 probe costs a second handshake; configurations rarely change, so it runs
    # at most once per KEYCHEST_SCAN_LEGACY_INTERVAL (and for every new address).
    legacy_checked_at = models.DateTimeField(null=True, blank=True)
    # DNS: the last answer (checked addresses) and when it was taken, re-resolved at most every 2 h.
    dns_addresses = models.JSONField(default=list, blank=True)
    dns_refused = models.JSONField(default=list, blank=True)
    dns_error = models.CharField(max_length=40, blank=True)
    dns_resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "host", "port", "protocol"],
                condition=Q(removed_at=None),
                name="server_unique_active",
            )
        ]
        indexes = [
            models.Index(fields=["next_scan_at"], name="server_due", condition=Q(removed_at=None, paused=False)),
            models.Index(fields=["team", "host"], name="server_team_host"),
        ]
        ordering = ["host", "port", "id"]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        suffix = "" if self.protocol == Protocol.TLS else f" ({self.protocol})"
        return f"{host}:{self.port}{suffix}"

    @property
    def is_active(self) -> bool:
        return self.removed_at is None and not self.paused

    def thresholds(self, policy: TeamScanPolicy | None = None) -> tuple[float | None, float | None]:
        """(due, overdue) fractions: the server's own, else the team's, else None (defaults)."""
        team_due, team_overdue = (policy.due_fraction, policy.overdue_fraction) if policy else (None, None)
        return effective_thresholds(self.due_fraction, self.overdue_fraction, team_due, team_overdue)


class ScanResult(TeamOwnedModel):
    """What one address of a server presented, for as long as it stayed the same.

    A new row is written only when something changed (certificate, chain, TLS version, error);
    otherwise `last_seen` moves. The rows of one (server, address) are its history.
    """

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="results")
    address = models.CharField(max_length=45)
    current = models.BooleanField(default=True)
    # A digest of everything below that matters; equal digests mean "nothing changed".
    state_digest = models.CharField(max_length=64)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    leaf_sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    chain_sha256 = models.JSONField(default=list, blank=True)
    # The second certificate this address serves side by side (the other key family: RSA beside
    # ECDSA or the reverse), with its own history; False for the first one.
    alternate = models.BooleanField(default=False)
    subject = models.CharField(max_length=500, blank=True)
    issuer = models.CharField(max_length=500, blank=True)
    issuer_key = models.CharField(max_length=128, blank=True)
    names = models.JSONField(default=list, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    not_after = models.DateTimeField(null=True, blank=True)
    tls_version = models.CharField(max_length=16, blank=True)
    cipher = models.CharField(max_length=100, blank=True)
    legacy_tls = models.JSONField(default=list, blank=True)
    trusted = models.BooleanField(null=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["server", "address", "-first_seen"], name="scanresult_history"),
            models.Index(fields=["server"], name="scanresult_current", condition=Q(current=True)),
        ]
        ordering = ["server_id", "address", "-first_seen"]

    def __str__(self) -> str:
        return f"{self.server_id} {self.address} {self.leaf_sha256[:12] or self.error_code}"

    def days_left(self, now: datetime) -> float | None:
        if self.not_after is None:
            return None
        return renewal.days_left(self.not_after, now)

    def renewal_state(self, now: datetime, *, due: float | None = None, overdue: float | None = None) -> str | None:
        if self.not_before is None or self.not_after is None:
            return None
        return renewal.renewal_state(self.not_before, self.not_after, now, due_fraction=due, overdue_fraction=overdue)

    def renewal_due(self, now: datetime, *, due: float | None = None, overdue: float | None = None) -> bool:
        """True when renewal is due, overdue or the certificate expired."""
        return self.renewal_state(now, due=due, overdue=overdue) in renewal.NEEDS_RENEWAL

    def renewal_at(self, *, due: float | None = None) -> datetime | None:
        if self.not_before is None or self.not_after is None:
            return None
        return renewal.renewal_at(self.not_before, self.not_after, due_fraction=due)


class TimelineEntry(TeamOwnedModel):
    """One change seen on a server: a new certificate on an address, an address added, an error."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="timeline")
    address = models.CharField(max_length=45, blank=True)
    kind = models.CharField(max_length=40)
    summary = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["server", "-at"], name="timeline_recent")]
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.summary}"


class Finding(TeamOwnedModel):
    """A problem the check sequence found, with a stable code; open while `resolved_at` is None."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="findings")
    code = models.CharField(max_length=40)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    message = models.CharField(max_length=500)
    # The address it concerns; "" for findings about the server as a whole (DNS, ips_disagree).
    address = models.CharField(max_length=45, blank=True)
    details = models.JSONField(default=dict, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["server", "code", "address"], condition=Q(resolved_at=None), name="finding_unique_open"
            )
        ]
        indexes = [
            models.Index(fields=["team", "code"], name="finding_team_open", condition=Q(resolved_at=None)),
        ]
        ordering = ["-first_seen", "-id"]

    def __str__(self) -> str:
        return f"{self.code} {self.address}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class SpotCheck(models.Model):
    """A public one-off check, kept so its result has a shareable link (no team, no login)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    host = models.CharField(max_length=253)
    port = models.PositiveIntegerField()
    protocol = models.CharField(max_length=10, choices=Protocol.choices, default=Protocol.TLS)
    result = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


# --- Domain registration (RDAP) ---------------------------------------------------------------
# Warnings when a registration's expiry comes within these many days (largest first).
REGISTRATION_THRESHOLDS_DAYS = (84, 28, 14)


class RegistrationStatus(models.TextChoices):
    PENDING = "pending", "Not checked yet"
    OK = "ok", "Known"
    NOT_FOUND = "not_found", "Not registered (RDAP 404)"
    NO_SERVER = "no_server", "No RDAP server for this TLD"
    ERROR = "error", "Check failed"


class DomainRegistration(models.Model):
    """Public registration data of one registered domain (PSL), shared by every team that watches it."""

    # The registered domain (public suffix + one label), e.g. "example.co.uk".
    domain = models.CharField(max_length=253, unique=True)
    status = models.CharField(max_length=12, choices=RegistrationStatus.choices, default=RegistrationStatus.PENDING)
    expires_at = models.DateTimeField(null=True, blank=True)
    registered_at = models.DateTimeField(null=True, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)
    registrar = models.CharField(max_length=200, blank=True)
    statuses = models.JSONField(default=list, blank=True)
    # The RDAP base URL the last answer (or error) came from.
    rdap_server = models.CharField(max_length=500, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    # When the data (not only the check) last changed: a check that learns nothing new keeps it.
    last_changed_at = models.DateTimeField(null=True, blank=True)
    last_error_code = models.CharField(max_length=20, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    consecutive_errors = models.PositiveIntegerField(default=0)
    # Scheduling: due when next_check_at <= now; a claim holds the row until claimed_until.
    next_check_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["next_check_at"], name="registration_due")]
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain

    def days_left(self, now: datetime) -> int | None:
        if self.expires_at is None:
            return None
        return (self.expires_at - now).days

    def threshold(self, now: datetime) -> int | None:
        """The smallest warning threshold (days) the expiry is already within, or None."""
        if self.expires_at is None:
            return None
        left = self.expires_at - now
        crossed = [t for t in REGISTRATION_THRESHOLDS_DAYS if left <= timedelta(days=t)]
        return min(crossed) if crossed else None

    def level(self, now: datetime) -> str:
        """How worrying the registration is: expired, error (<= 14 d), warning (<= 28 d), due (<= 84 d), ok, unknown."""
        if self.expires_at is None:
            return "unknown"
        if self.expires_at <= now:
            return "expired"
        threshold = self.threshold(now)
        return {14: "error", 28: "warning", 84: "due"}.get(threshold or 0, "ok")

    def next_threshold_at(self, now: datetime) -> datetime | None:
        """When the expiry next comes within a threshold not crossed yet, or None."""
        if self.expires_at is None:
            return None
        times = [self.expires_at - timedelta(days=t) for t in REGISTRATION_THRESHOLDS_DAYS]
        future = [t for t in times if t > now]
        return min(future) if future else None


class RdapServer(models.Model):
    """One RDAP server's health: after 429/5xx/timeouts it is left alone until `backoff_until`."""

    base_url = models.CharField(max_length=500, unique=True)
    backoff_until = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.base_url


class RegistrationWatch(TeamOwnedModel):
    """That a team watches something under a registered domain (kept in sync from servers and domains)."""

    registration = models.ForeignKey(DomainRegistration, on_delete=models.CASCADE, related_name="watches")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "registration"], name="registrationwatch_unique_team")]


class EnrolmentKind(models.TextChoices):
    SERVER = "server", "Server"
    CERTIFICATE = "certificate", "Certificate"


class PendingEnrolment(TeamOwnedModel):
    """Something an unconfirmed key enrolled: held here, never scanned, until the key is confirmed."""

    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.CASCADE, related_name="pending_enrolments")
    kind = models.CharField(max_length=12, choices=EnrolmentKind.choices)
    host = models.CharField(max_length=253, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    # Certificates: the DER bytes and their SHA-256, so the status call can answer before confirmation.
    der = models.BinaryField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    not_after = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "api_pendingenrolment"  # the table keeps the name it had in api/ (issue 20)
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "kind", "host", "port", "sha256"], name="pendingenrolment_unique_item"
            )
        ]

    def __str__(self) -> str:
        if self.kind == EnrolmentKind.SERVER:
            return f"{self.host}:{self.port}" if self.port else self.host
        return f"certificate {self.sha256[:16]}"
