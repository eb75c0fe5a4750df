"""Certificate store services: store certificates (one or many), look them up by name.

Every writer (TLS scans, API uploads, CT ingestion) stores through `certificate_store_der` or
`certificates_store_bulk`, so a certificate is one row however many places it was seen in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from certificates import pgstore
from certificates.models import Certificate, CertificateName, CertificateSource, SourceKind
from certificates.pgstore import StoreItem
from kcproto.issuance import lets_encrypt_issued
from kcproto.names import (
    is_wildcard,
    normalise_name,
    parent_wildcard,
    registered_domain,
    reversed_name,
)
from kcproto.x509 import ParsedCertificate, parse_certificate

# Let's Encrypt's limits the scanner warns about (PRODUCT.md): per registered domain and per
# identical set of names, both over a sliding 7 days.
RATE_LIMIT_WINDOW = timedelta(days=7)
RATE_LIMIT_CERTIFICATES_PER_DOMAIN = 50
RATE_LIMIT_DUPLICATE_CERTIFICATES = 5


@dataclass
class StoreResult:
    """What a bulk store did: the id of every certificate, and which of them are new."""

    ids: dict[str, int]  # sha256 -> Certificate.id
    new: list[ParsedCertificate]


def _certificate_row(p: ParsedCertificate, *, ct_logged: bool) -> Certificate:
    return Certificate(
        ct_logged=ct_logged,
        sha256=p.sha256,
        der=p.der,
        serial=p.serial[:80],
        issuer=p.issuer,
        subject=p.subject,
        issuer_key_id=p.issuer_key_id[:128],
        subject_key_id=p.subject_key_id[:128],
        not_before=p.not_before,
        not_after=p.not_after,
        lifetime=p.lifetime,
        key_type=p.key_type,
        key_size=p.key_size,
        signature_algorithm=p.signature_algorithm[:64],
        is_ca=p.is_ca,
        is_precertificate=p.is_precertificate,
        issuance_key=p.issuance_key,
    )


def name_rows(certificate_id: int, p: ParsedCertificate) -> list[CertificateName]:
    """The name-table rows of one certificate."""
    return [
        CertificateName(
            certificate_id=certificate_id,
            name=name,
            reversed_name=reversed_name(name),
            registered_domain=registered_domain(name),
            is_wildcard=is_wildcard(name),
            not_before=p.not_before,
            not_after=p.not_after,
        )
        for name in p.all_names
    ]


def upload_source_ref(team_uuid: object) -> str:
    """The `ref` of the source row an upload records: which team uploaded the certificate."""
    return f"team:{team_uuid}"


def _check_source(source: str) -> None:
    if source not in SourceKind.values:
        raise ValueError(f"unknown certificate source {source!r}")


def certificates_store_bulk(*, items: Sequence[StoreItem]) -> StoreResult:
    """Store many parsed certificates at once; idempotent by SHA-256, sources added.

    A handful of statements whatever the batch size. Certificates already stored keep their
    row and only gain the new source. Runs in the caller's transaction if there is one (CT
    ingestion commits certificates, events and the log position together). On PostgreSQL the
    rows go in by binary COPY (certificates/pgstore.py); elsewhere through the ORM.
    """
    for item in items:
        _check_source(item.source)
    by_sha: dict[str, ParsedCertificate] = {}
    for item in items:
        by_sha.setdefault(item.parsed.sha256, item.parsed)
    if not by_sha:
        return StoreResult(ids={}, new=[])
    if pgstore.copy_supported():
        ids, new = pgstore.store(items, by_sha)
        return StoreResult(ids=ids, new=new)
    return _store_portable(items, by_sha)


def _store_portable(items: Sequence[StoreItem], by_sha: dict[str, ParsedCertificate]) -> StoreResult:
    """The ORM path (SQLite, other databases): the same semantics, more statements."""
    with transaction.atomic():
        ids: dict[str, int] = dict(
            Certificate.objects.filter(sha256__in=list(by_sha)).values_list("sha256", "id")  # type: ignore[arg-type]
        )
        missing = [p for sha, p in by_sha.items() if sha not in ids]
        logged = {i.parsed.sha256 for i in items if i.source == SourceKind.CT}
        new: list[ParsedCertificate] = []
        if missing:
            Certificate.objects.bulk_create(
                [_certificate_row(p, ct_logged=p.sha256 in logged) for p in missing],
                ignore_conflicts=True,
                batch_size=500,
            )
            # bulk_create(ignore_conflicts=True) returns no ids: read them back. SQLite serialises
            # writers (IMMEDIATE transactions), so every missing row found now is ours.
            inserted = dict(
                Certificate.objects.filter(sha256__in=[p.sha256 for p in missing]).values_list("sha256", "id")  # type: ignore[arg-type]
            )
            ids.update(inserted)
            new = [p for p in missing if p.sha256 in inserted]
            names = [row for p in new for row in name_rows(ids[p.sha256], p)]
            CertificateName.objects.bulk_create(names, ignore_conflicts=True, batch_size=2000)
        sources = {(ids[i.parsed.sha256], i.source, i.source_ref[:300]) for i in items if i.parsed.sha256 in ids}
        CertificateSource.objects.bulk_create(
            [CertificateSource(certificate_id=c, kind=k, ref=r) for c, k, r in sorted(sources)],
            ignore_conflicts=True,
            batch_size=2000,
        )
        Certificate.objects.filter(id__in=[ids[sha] for sha in logged if sha in ids], ct_logged=False).update(
            ct_logged=True
        )
    return StoreResult(ids=ids, new=new)


def certificate_store_der(*, der: bytes | str, source: str, source_ref: str = "") -> Certificate:
    """Store one certificate (DER, or PEM text) seen by `source`; returns the stored row.

    Idempotent by SHA-256: storing it again only records the additional source. Raises
    kcproto.x509.CertificateParseError for malformed input.
    """
    _check_source(source)
    parsed = parse_certificate(der)
    result = certificates_store_bulk(items=[StoreItem(parsed=parsed, source=source, source_ref=source_ref)])
    return Certificate.objects.get(pk=result.ids[parsed.sha256])


def _names_query(name: str, *, include_subdomains: bool) -> Q:
    rev = reversed_name(name)
    query = Q(reversed_name=rev)
    if include_subdomains and not is_wildcard(name):
        query |= Q(reversed_name__startswith=rev + ".")
    covering = parent_wildcard(name)
    if covering is not None:
        # The reversed form is indexed; the name itself is not (one index fewer to maintain).
        query |= Q(reversed_name=reversed_name(covering))
    return query


def _one_per_issuance(qs: QuerySet[Certificate]) -> QuerySet[Certificate]:
    """Hide a precertificate when its final certificate is stored: one issuance shows once."""
    final = Certificate.objects.filter(issuance_key=OuterRef("issuance_key"), is_precertificate=False)
    return qs.exclude(Q(is_precertificate=True) & Exists(final))


def certificates_for(
    domain: str,
    include_subdomains: bool = True,
    valid_at: datetime | None = None,
    *,
    one_per_issuance: bool = True,
) -> QuerySet[Certificate]:
    """Certificates naming `domain` (and, by default, any name under it), newest first.

    A wildcard covering the name counts ("*.example.com" for "www.example.com"). One row per
    issuance: a precertificate is left out when its final certificate is stored (unless
    `one_per_issuance` is off: a caller that shows only part of the store, a team's view, must
    merge within that part). `valid_at` keeps only certificates valid at that moment. Raises
    InvalidName for a malformed domain.
    """
    name = normalise_name(domain)
    names = CertificateName.objects.filter(_names_query(name, include_subdomains=include_subdomains))
    if valid_at is not None:
        names = names.filter(not_before__lte=valid_at, not_after__gt=valid_at)
    qs = Certificate.objects.filter(id__in=names.values("certificate_id"))
    return (_one_per_issuance(qs) if one_per_issuance else qs).order_by("-not_before", "-id")


def newest_certificate_for_name(
    name: str, *, valid_at: datetime | None = None, include_precertificates: bool = True
) -> Certificate | None:
    """The most recently issued certificate covering exactly `name` (its own or a covering wildcard).

    Precertificates count by default (many CAs log only those), but for one issuance the final
    certificate is preferred. With `valid_at`, only certificates valid at that moment.
    """
    host = normalise_name(name)
    names = CertificateName.objects.filter(_names_query(host, include_subdomains=False))
    if valid_at is not None:
        names = names.filter(not_before__lte=valid_at, not_after__gt=valid_at)
    qs = Certificate.objects.filter(id__in=names.values("certificate_id"), is_ca=False)
    if not include_precertificates:
        qs = qs.filter(is_precertificate=False)
    return qs.order_by("-not_before", "is_precertificate", "-id").first()


def certificate_issuances_count(
    *, registered_domain: str, since: datetime, until: datetime | None = None, lets_encrypt_only: bool = False
) -> int:
    """Issuances (precertificate and certificate counted once) for a registered domain since `since`.

    With `lets_encrypt_only`, only certificates Let's Encrypt issued (its limits count no others)."""
    names = CertificateName.objects.filter(registered_domain=registered_domain, not_before__gte=since)
    if until is not None:
        names = names.filter(not_before__lt=until)
    issued = Certificate.objects.filter(id__in=names.values("certificate_id"), is_ca=False)
    if not lets_encrypt_only:
        return issued.values("issuance_key").distinct().count()
    rows = issued.values_list("issuance_key", "issuer").distinct()
    return len({key for key, issuer in rows if lets_encrypt_issued(issuer)})


def certificate_duplicates_count(*, names: Iterable[str], since: datetime) -> int:
    """Issuances since `since` with exactly this set of names (Let's Encrypt's duplicate limit)."""
    wanted = {normalise_name(n) for n in names}
    if not wanted:
        return 0
    first = min(wanted)
    candidates = Certificate.objects.filter(
        id__in=CertificateName.objects.filter(reversed_name=reversed_name(first), not_before__gte=since).values(
            "certificate_id"
        ),
        is_ca=False,
    ).values_list("id", "issuance_key")
    cert_keys = dict(candidates)
    sets: dict[int, set[str]] = {cid: set() for cid in cert_keys}
    for cid, n in CertificateName.objects.filter(certificate_id__in=list(cert_keys)).values_list(
        "certificate_id", "name"
    ):
        sets[cid].add(n)
    return len({cert_keys[cid] for cid, s in sets.items() if s == wanted})


def duplicate_issuances(
    *, registered_domain: str, since: datetime, lets_encrypt_only: bool = False
) -> dict[frozenset[str], int]:
    """Issuances since `since` per exact set of names, for certificates naming `registered_domain`.

    Let's Encrypt allows 5 certificates with the same set of names per 7 days; a renewal job
    that runs too often meets this limit first. Two queries for the whole registered domain.
    With `lets_encrypt_only`, only certificates Let's Encrypt issued count."""
    rows = Certificate.objects.filter(
        id__in=CertificateName.objects.filter(registered_domain=registered_domain, not_before__gte=since).values(
            "certificate_id"
        ),
        is_ca=False,
    ).values_list("id", "issuance_key", "issuer")
    keys = {cid: key for cid, key, issuer in rows if not lets_encrypt_only or lets_encrypt_issued(issuer)}
    if not keys:
        return {}
    sets: dict[int, set[str]] = {cid: set() for cid in keys}
    for cid, name in CertificateName.objects.filter(certificate_id__in=list(keys)).values_list(
        "certificate_id", "name"
    ):
        sets[cid].add(name)
    issuances: dict[frozenset[str], set[str]] = {}
    for cid, names in sets.items():
        issuances.setdefault(frozenset(names), set()).add(keys[cid])
    return {names: len(found) for names, found in issuances.items()}


@dataclass(frozen=True)
class RateLimitUsage:
    """How close a name's registered domain is to Let's Encrypt's weekly limits."""

    registered_domain: str
    issued: int
    limit: int
    window: timedelta

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.issued)

    @property
    def fraction_used(self) -> float:
        return self.issued / self.limit if self.limit else 0.0


def rate_limit_usage(*, name: str, now: datetime | None = None) -> RateLimitUsage:
    """Let's Encrypt issuances in the last 7 days for the registered domain of `name` against its limit of 50.

    Certificates of other CAs (a company's own CA, a commercial CA) do not count: the limit is
    Let's Encrypt's alone."""
    now = now or timezone.now()
    domain = registered_domain(normalise_name(name))
    issued = (
        certificate_issuances_count(registered_domain=domain, since=now - RATE_LIMIT_WINDOW, lets_encrypt_only=True)
        if domain
        else 0
    )
    return RateLimitUsage(
        registered_domain=domain,
        issued=issued,
        limit=RATE_LIMIT_CERTIFICATES_PER_DOMAIN,
        window=RATE_LIMIT_WINDOW,
    )


def certificate_names(certificate: Certificate) -> list[str]:
    """The names of a stored certificate, as stored."""
    return list(certificate.names.order_by("id").values_list("name", flat=True))


def certificates_thin(*, now: datetime | None = None, retention_days: int | None = None, batch: int = 5000) -> int:
    """Drop the DER and the per-log-entry sources of certificates expired longer than the retention.

    What stays (fingerprint, issuer, validity, issuance key, names) answers every look-up and the
    history a team sees when it adds a domain; only "show me the bytes" is lost. Returns the
    number of certificates thinned.
    """
    from django.conf import settings

    now = now or timezone.now()
    days = settings.KEYCHEST_CT_RETENTION_DAYS if retention_days is None else retention_days
    cutoff = now - timedelta(days=days)
    total = 0
    while True:
        ids = list(
            Certificate.objects.filter(not_after__lt=cutoff, thinned=False, is_ca=False).values_list("id", flat=True)[
                :batch
            ]
        )
        if not ids:
            return total
        with transaction.atomic():
            Certificate.objects.filter(id__in=ids).update(der=b"", thinned=True)
            CertificateSource.objects.filter(certificate_id__in=ids, kind=SourceKind.CT).delete()
        total += len(ids)
