"""Certificate store: certificates by SHA-256, the global name table, where each was seen.

These rows are global (not team-owned): a certificate is a public fact. Teams reach it only
through their own servers, uploads and watched domains.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models

# ACME clients renew with a third of the lifetime left; past a sixth (at most two weeks) a
# renewal has failed at least once. Fractions, not fixed days: lifetimes run from 6 to 398 days.
RENEWAL_DUE_FRACTION = 1 / 3
RENEWAL_OVERDUE_FRACTION = 1 / 6
RENEWAL_OVERDUE_CAP = timedelta(days=14)


class Certificate(models.Model):
    """One X.509 certificate or precertificate, stored once by its SHA-256 fingerprint."""

    sha256 = models.CharField(max_length=64, unique=True)
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
    issuance_key = models.CharField(max_length=64, db_index=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    # Expired past the retention period: the DER was dropped, the facts above remain.
    thinned = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["issuer_key_id", "not_before"], name="cert_issuer_notbefore")]

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
        return self.time_left(now) <= self.lifetime * RENEWAL_DUE_FRACTION

    def renewal_overdue(self, now: datetime) -> bool:
        """Less than a sixth of the lifetime (at most two weeks) is left: a renewal has failed."""
        return self.time_left(now) <= min(self.lifetime * RENEWAL_OVERDUE_FRACTION, RENEWAL_OVERDUE_CAP)

    def renewal_at(self) -> datetime:
        """When renewal becomes due."""
        return self.not_after - self.lifetime * RENEWAL_DUE_FRACTION


class CertificateName(models.Model):
    """One name of one certificate: the global look-up table ("which certificates name x?")."""

    certificate = models.ForeignKey(Certificate, on_delete=models.CASCADE, related_name="names")
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
            models.Index(fields=["name"], name="certname_name"),
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

    certificate = models.ForeignKey(Certificate, on_delete=models.CASCADE, related_name="sources")
    kind = models.CharField(max_length=10, choices=SourceKind.choices)
    # "host:port" for scans, "<log id>:<index>" for CT, free text (e.g. "api") for uploads.
    ref = models.CharField(max_length=300, blank=True, default="")
    seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["certificate", "kind", "ref"], name="certsource_unique")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.ref}"
