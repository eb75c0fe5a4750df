"""Certificate store: certificates by SHA-256, the global name table, where each was seen.

These rows are global (not team-owned), but only what was read from a CT log (`ct_logged`) is
public knowledge. A team reaches a certificate through its own servers and uploads, or, when the
certificate was read from a CT log, through a watched domain it names.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models

# The one renewal rule (fractions of the certificate's own lifetime): kcproto/renewal.py.
from kcproto import renewal
from keychest.tenancy import TeamOwnedModel


class Certificate(models.Model):
    """One X.509 certificate or precertificate, stored once by its SHA-256 fingerprint."""

    sha256 = models.CharField(max_length=64)
    # The DER; PostgreSQL compresses it (TOAST) when large. Emptied when thinned (see `thinned`).
    der = models.BinaryField()
    serial = models.CharField(max_length=80)
    issuer = models.TextField()
    subject = models.TextField()
    issuer_key_id = models.CharField(max_length=128, blank=True, default="")
    subject_key_id = models.CharField(max_length=128, blank=True, default="")
    not_before = models.DateTimeField()
    not_after = models.DateTimeField(db_index=True)
    lifetime = models.DurationField()
    key_type = models.CharField(max_length=16)
    key_size = models.PositiveIntegerField(default=0)
    signature_algorithm = models.CharField(max_length=64)
    is_ca = models.BooleanField(default=False)
    is_precertificate = models.BooleanField(default=False)
    # Equal for a precertificate and its final certificate: SHA-256 of the TBSCertificate
    # without the CT poison extension and the SCT list.
    issuance_key = models.CharField(max_length=64)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    # Expired past the retention period: the DER was dropped, the facts above remain.
    thinned = models.BooleanField(default=False)
    # Read from a Certificate Transparency log (not merely naming a watched domain): the public
    # part of the store. A certificate only scanned or uploaded stays private to the teams that
    # scanned (monitors.ScanResult) or uploaded (api.UploadedCertificate) it. Kept when thinned.
    ct_logged = models.BooleanField(default=False, db_default=False)

    class Meta:
        # Declared here rather than with unique=/db_index=, which on PostgreSQL also add a
        # varchar_pattern_ops twin index per column: pure write cost for exact-match hashes.
        constraints = [models.UniqueConstraint(fields=["sha256"], name="cert_sha256_unique")]
        indexes = [models.Index(fields=["issuance_key"], name="cert_issuance_key")]

    def __str__(self) -> str:
        return f"{self.subject or self.sha256[:16]} ({self.sha256[:12]})"

    def time_left(self, now: datetime) -> timedelta:
        return self.not_after - now

    def days_left(self, now: datetime) -> int:
        """Whole days until expiry (negative once expired)."""
        return (self.not_after - now) // timedelta(days=1)

    def fraction_left(self, now: datetime) -> float:
        total = self.lifetime.total_seconds()
        if total <= 0:
            return 0.0
        return max(0.0, min(1.0, (self.not_after - now).total_seconds() / total))

    def is_expired(self, now: datetime) -> bool:
        return now >= self.not_after

    def is_valid_at(self, when: datetime) -> bool:
        return self.not_before <= when < self.not_after

    def renewal_due(self, now: datetime) -> bool:
        """A third of the lifetime or less is left (what ACME clients do), or it expired."""
        return renewal.renewal_needed(self.not_before, self.not_after, now)

    def renewal_overdue(self, now: datetime) -> bool:
        """Less than a sixth of the lifetime (at most two weeks) is left: a renewal has failed."""
        return renewal.renewal_state(self.not_before, self.not_after, now) in ("overdue", "expired")

    def renewal_at(self) -> datetime:
        """When renewal becomes due."""
        return renewal.renewal_at(self.not_before, self.not_after)


class RenewalInfo(models.Model):
    """The CA's suggested renewal window for a certificate (ACME Renewal Information, RFC 9773)."""

    certificate = models.OneToOneField(Certificate, on_delete=models.CASCADE, related_name="renewal_info")
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    explanation_url = models.URLField(max_length=500, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # Not asked again before this (the CA's Retry-After, or our back-off after an error).
    next_check_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)

    class Meta:
        indexes = [models.Index(fields=["next_check_at"], name="renewalinfo_due")]

    def __str__(self) -> str:
        return f"ARI window of {self.certificate_id}: {self.window_start} - {self.window_end}"

    @property
    def window(self) -> tuple[datetime, datetime] | None:
        if self.window_start is None or self.window_end is None:
            return None
        return self.window_start, self.window_end


class CertificateName(models.Model):
    """One name of one certificate: the global look-up table ("which certificates name x?")."""

    # No index of its own: "certname_unique" (certificate, name) starts with it and serves every
    # look-up by certificate; a second index would only cost writes (~3.5 name rows per entry).
    certificate = models.ForeignKey(Certificate, on_delete=models.CASCADE, related_name="names", db_index=False)
    # Normalised: lower case, IDNA A-labels, "*.example.com" for wildcards, IP literals as text.
    name = models.CharField(max_length=253)
    # "www.example.com" -> "com.example.www": everything under a domain is one range scan.
    reversed_name = models.CharField(max_length=253)
    # Public Suffix List registered domain ("example.co.uk"); "" for IPs and bare suffixes.
    registered_domain = models.CharField(max_length=253)
    is_wildcard = models.BooleanField(default=False)
    # Copied from the certificate so look-ups by name and validity never touch the wide table.
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["certificate", "name"], name="certname_unique")]
        indexes = [
            # text_pattern_ops: prefix (LIKE 'com.example.%') and equality use the index whatever
            # the database collation.
            models.Index(
                fields=["reversed_name", "not_after"],
                name="certname_reversed",
                opclasses=["text_pattern_ops", "timestamptz_ops"],
            ),
            models.Index(fields=["registered_domain", "not_before"], name="certname_regdomain"),
        ]

    def __str__(self) -> str:
        return self.name


class SourceKind(models.TextChoices):
    SCAN = "scan", "TLS scan"
    CT = "ct", "Certificate Transparency log"
    UPLOAD = "upload", "Uploaded"


class CertificateSource(models.Model):
    """Where a certificate was seen: a scan (host:port), a CT log entry (log id:index), an upload."""

    # Covered by "certsource_unique" (certificate, kind, ref), as for names.
    certificate = models.ForeignKey(Certificate, on_delete=models.CASCADE, related_name="sources", db_index=False)
    kind = models.CharField(max_length=10, choices=SourceKind.choices)
    # "host:port" for scans, "<log id>:<index>" for CT, free text (e.g. "api") for uploads.
    ref = models.CharField(max_length=300, blank=True, default="")
    seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["certificate", "kind", "ref"], name="certsource_unique")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.ref}"


class CTLogKind(models.TextChoices):
    RFC6962 = "rfc6962", "RFC 6962"
    STATIC = "static", "static-ct-api"


class CTLog(models.Model):
    """A Certificate Transparency log from the log list, with the ingester's durable position in it."""

    log_id = models.CharField(max_length=64, unique=True)  # base64 SHA-256 of the key, as in the log list
    description = models.CharField(max_length=200)
    operator = models.CharField(max_length=200, blank=True, default="")
    kind = models.CharField(max_length=10, choices=CTLogKind.choices)
    # RFC 6962: the log URL; static-ct-api: the monitoring prefix (tiles, checkpoint, issuers).
    url = models.URLField(max_length=300)
    submission_url = models.URLField(max_length=300, blank=True, default="")
    public_key = models.BinaryField()  # DER SubjectPublicKeyInfo
    mmd = models.PositiveIntegerField(default=86400)
    list_state = models.CharField(max_length=20, blank=True, default="")  # usable, readonly, retired, ...
    in_list = models.BooleanField(default=True)  # False once it left the configured log list
    enabled = models.BooleanField(default=True)

    # Where ingestion is: entries [0, position) are done; null until the first contact, when a new
    # log starts at its current end (or at `start_index` when backfilling).
    position = models.BigIntegerField(null=True, blank=True)
    start_index = models.BigIntegerField(null=True, blank=True)
    # The compact range of [0, position) (see kcproto/merkle.py), committed with the entries.
    compact_range = models.JSONField(default=dict, blank=True)
    # The newest tree head whose signature and root our position was verified against.
    verified_size = models.BigIntegerField(default=0)
    verified_root = models.CharField(max_length=64, blank=True, default="")
    verified_at = models.DateTimeField(null=True, blank=True)
    sth_size = models.BigIntegerField(default=0)  # the newest signed size seen (backlog = sth_size - position)

    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    backoff_until = models.DateTimeField(null=True, blank=True)
    # Set when what the log served did not verify (signature, root, shrinking tree): ingestion
    # of this log stops until an operator looks and resets it.
    halted_reason = models.TextField(blank=True, default="")
    entries_ingested = models.BigIntegerField(default=0)
    # learned server-side get-entries limit (RFC 6962); 0 = not learned yet
    batch_size = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    # Which ingester reads this log (certificates/leases.py): one at a time, until `lease_until`
    # (database time). A crashed holder's lease simply runs out; every commit checks it still holds.
    lease_holder = models.CharField(max_length=200, blank=True, default="")
    lease_until = models.DateTimeField(null=True, blank=True)
    # Since when the log's signed head has been ahead of our position without a break (null when
    # caught up): the health check fails when this is over a minute old.
    behind_since = models.DateTimeField(null=True, blank=True)
    # How the verified starting point was found, when not the usual way (e.g. the log answers 404
    # to get-entry-and-proof and the start came from a consistency proof instead).
    start_note = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["description", "id"]

    def __str__(self) -> str:
        return self.description

    @property
    def backlog(self) -> int:
        return max(0, self.sth_size - (self.position or 0)) if self.position is not None else 0

    @property
    def healthy(self) -> bool:
        return not self.halted_reason and self.consecutive_failures < 5

    def lag_seconds(self, now: datetime) -> float:
        """How long the log's head has been ahead of us without a break (0 when caught up)."""
        return max(0.0, (now - self.behind_since).total_seconds()) if self.behind_since else 0.0

    def leased_to(self, now: datetime) -> str:
        """The ingester currently reading this log, or ""."""
        return self.lease_holder if self.lease_until and self.lease_until > now else ""

    def status(self, now: datetime) -> str:
        if not self.enabled:
            return "disabled"
        if self.halted_reason:
            return "halted"
        if self.backoff_until and self.backoff_until > now:
            return "backing-off"
        if self.consecutive_failures >= 5:
            return "unhealthy"
        if self.position is None:
            return "new"
        return "caught-up" if self.backlog == 0 else "behind"


class CTFollower(models.Model):
    """A running CT follower process, alive until `alive_until` (how the followers share the logs)."""

    holder = models.CharField(max_length=200, unique=True)
    alive_until = models.DateTimeField()

    def __str__(self) -> str:
        return self.holder


class CTMalformedEntry(models.Model):
    """A log entry that could not be read: recorded, skipped, its leaf still verified in the tree."""

    log = models.ForeignKey(CTLog, on_delete=models.CASCADE, related_name="malformed_entries")
    index = models.BigIntegerField()
    reason = models.CharField(max_length=300)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["log", "index"], name="ctmalformed_unique")]
        ordering = ["log", "index"]

    def __str__(self) -> str:
        return f"{self.log_id}:{self.index}: {self.reason}"


class UploadedCertificate(TeamOwnedModel):
    """A certificate a team uploaded (API or deploy hook); the certificate itself is in the store."""

    certificate = models.ForeignKey(Certificate, on_delete=models.CASCADE, related_name="+")
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        db_table = "api_uploadedcertificate"  # the table keeps the name it had in api/ (issue 20)
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["team", "certificate"], name="uploadedcert_unique")]

    def __str__(self) -> str:
        return f"upload {self.certificate_id} by team {self.team_id}"
