"""What one storing pass of a scan shares across servers: validated chains, trust stores, team
policies, and the certificate store's answers (newest certificates, ARI windows, Let's Encrypt
usage), each asked once per pass whatever the number of servers."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certificates.ari import windows_for
from certificates.models import Certificate, CertificateName
from certificates.services import (
    RATE_LIMIT_WINDOW,
    RateLimitUsage,
    duplicate_issuances,
    rate_limit_usage,
)
from kcproto import netguard
from kcproto.names import parent_wildcard, registered_domain
from kcproto.validation import TrustStore, Validation, trust_store, validate, with_host
from kcproto.x509 import ParsedCertificate
from monitors.models import Server, TeamScanPolicy

NEWER_CERTIFICATE_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class Newest:
    sha256: str
    not_before: datetime
    issuance_key: str


class ScanPass:
    """The state of one storing pass; caches what many servers share (chains, trust stores)."""

    def __init__(self, servers: Sequence[Server], now: datetime) -> None:
        self.now = now
        self.servers = servers
        self.validations: dict[tuple[tuple[bytes, ...], str, str], Validation] = {}
        self.stores: dict[str, TrustStore] = {}
        self.bundles: dict[str, str] = {}
        self.policies = {p.team_id: p for p in TeamScanPolicy.objects.filter(team_id__in={s.team_id for s in servers})}
        self.parsed: dict[str, tuple[ParsedCertificate, str]] = {}
        self.rate_limits: dict[str, RateLimitUsage] = {}
        # Issuances per exact name set, by registered domain (Let's Encrypt's duplicate limit).
        self.duplicates: dict[str, dict[frozenset[str], int]] = {}
        self.newest: dict[tuple[str, str], Newest] | None = None
        self.ari: dict[str, tuple[datetime, datetime]] | None = None

    def store_for(self, server: Server) -> TrustStore:
        # An unsaved bundle (the spot check's own CA file) is keyed by its text.
        bundle = server.ca_bundle.pem if server.ca_bundle else ""
        key = str(server.ca_bundle_id) if server.ca_bundle_id else hashlib.sha256(bundle.encode()).hexdigest()
        if key not in self.stores:
            self.stores[key] = trust_store(bundle)
            self.bundles[self.stores[key].key] = bundle
        return self.stores[key]

    def validate(self, chain_der: list[bytes], host: str, store: TrustStore) -> Validation:
        """Trust and strength are per chain (cached across servers); the host name is per server."""
        key = (tuple(chain_der), "", store.key)
        if key not in self.validations:
            result = validate(chain_der, host, store, now=self.now)
            if result.incomplete_chain and not result.trusted and result.chain:
                # Intermediates the certificate store already knows may complete the path.
                known = known_issuers(result.chain[-1].issuer)
                if known:
                    bundle = trust_store(self.bundles.get(store.key, ""), known)
                    result = validate(chain_der, host, bundle, now=self.now)
            self.validations[key] = result
        return with_host(dataclasses.replace(self.validations[key]), host)

    def remember(self, validation: Validation, source_ref: str) -> None:
        """Keep the chain's certificates for the certificate store (first place seen wins)."""
        for parsed in validation.chain:
            self.parsed.setdefault(parsed.sha256, (parsed, source_ref))

    def ari_window(self, sha256: str) -> tuple[datetime, datetime] | None:
        """The CA's suggested renewal window of a leaf seen in this pass (one query per pass)."""
        if self.ari is None:
            self.ari = windows_for([sha for sha, (parsed, _) in self.parsed.items() if not parsed.is_ca])
        return self.ari.get(sha256)

    def newest_for(self, host: str, key_type: str) -> Newest | None:
        if self.newest is None:
            self.newest = newest_certificates([s.host for s in self.servers], self.now)
        return self.newest.get((host, key_type))

    def usage_for(self, host: str) -> RateLimitUsage:
        """Let's Encrypt's weekly usage of the host's registered domain (once per domain and pass)."""
        domain = registered_domain(host)
        if domain not in self.rate_limits:
            self.rate_limits[domain] = rate_limit_usage(name=host, now=self.now)
        return self.rate_limits[domain]

    def duplicates_for(self, domain: str) -> dict[frozenset[str], int]:
        """Let's Encrypt issuances per exact name set of a registered domain (once per pass)."""
        if domain not in self.duplicates:
            self.duplicates[domain] = duplicate_issuances(
                registered_domain=domain, since=self.now - RATE_LIMIT_WINDOW, lets_encrypt_only=True
            )
        return self.duplicates[domain]


def known_issuers(issuer_text: str) -> str:
    """PEM of CA certificates in the store whose subject is `issuer_text`."""
    pems: list[str] = []
    ders = Certificate.objects.filter(subject=issuer_text, is_ca=True, thinned=False).values_list("der", flat=True)
    for der in ders[:5]:
        try:
            pems.append(x509.load_der_x509_certificate(bytes(der)).public_bytes(Encoding.PEM).decode())
        except ValueError:
            continue
    return "".join(pems)


def newest_certificates(hosts: list[str], now: datetime) -> dict[tuple[str, str], Newest]:
    """For every host: the newest valid leaf per key type naming it (or a covering wildcard).

    One query for the whole run; the same answer as `certificates_for(host, include_subdomains=False)`
    restricted to valid, non-CA certificates read from CT logs and issued more than the grace
    period ago.
    """
    names: dict[str, list[str]] = {}
    for host in set(hosts):
        if netguard.parse_ip_literal(host) is not None:
            continue
        names.setdefault(host, []).append(host)
        wildcard = parent_wildcard(host)
        if wildcard:
            names.setdefault(wildcard, []).append(host)
    if not names:
        return {}
    rows = CertificateName.objects.filter(
        name__in=list(names),
        not_before__lte=now - NEWER_CERTIFICATE_GRACE,
        not_after__gt=now,
        certificate__is_ca=False,
        # Only the public part of the store: another team's scans and uploads are its own.
        certificate__ct_logged=True,
    ).values_list(
        "name",
        "certificate__sha256",
        "certificate__not_before",
        "certificate__issuance_key",
        "certificate__key_type",
    )
    newest: dict[tuple[str, str], Newest] = {}
    for name, sha256, not_before, issuance_key, key_type in rows:
        for host in names.get(name, []):
            current = newest.get((host, key_type))
            if current is None or not_before > current.not_before:
                newest[(host, key_type)] = Newest(sha256, not_before, issuance_key)
    return newest
