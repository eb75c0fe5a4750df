"""ACME Renewal Information (RFC 9773): the CA's own suggested renewal window.

A CA that must revoke certificates early (a mis-issuance incident) moves their suggested window
into the past, so ACME clients that read ARI renew at once. KeyChest reads the window of every
certificate currently served on a watched server whose CA publishes ARI, and the scanner turns an
open window into `renewal_due` and a window already over into `renewal_overdue`, even when the
lifetime rule says there is time (kcproto/checks.py).

The CA is found from the issuer name (its CAA identifiers, kcproto/issuance.py) and a
table of ACME directories (`KEYCHEST_ARI_DIRECTORIES` adds to or replaces entries). Requests go
through keychest/safehttp.py: the directory names the renewalInfo URL, which is remote data.
"""

from __future__ import annotations

import base64
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from certificates.models import Certificate, RenewalInfo
from kcproto.issuance import caa_identifiers
from keychest import jsonsafe, safehttp

DEFAULT_DIRECTORIES: dict[str, str] = {
    "letsencrypt.org": "https://acme-v02.api.letsencrypt.org/directory",
    "pki.goog": "https://dv.acme-v02.api.pki.goog/directory",
}
# Without Retry-After, ask again after DEFAULT_POLL; a CA's Retry-After is kept within bounds.
DEFAULT_POLL = timedelta(hours=6)
MIN_POLL = timedelta(minutes=10)
MAX_POLL = timedelta(days=2)
ERROR_BACKOFF = timedelta(hours=1)
NOT_FOUND_POLL = timedelta(days=1)
MAX_BODY = 65536
BUDGET_SECONDS = 120.0


def ari_cert_id(issuer_key_id_hex: str, serial_hex: str) -> str | None:
    """RFC 9773 section 4.1: base64url(AKI keyIdentifier) "." base64url(DER serial content)."""
    if not issuer_key_id_hex or not serial_hex or serial_hex.startswith("-"):
        return None
    try:
        key_id = bytes.fromhex(issuer_key_id_hex)
        serial = int(serial_hex, 16)
    except ValueError:
        return None
    # The INTEGER's content octets: two's complement, a leading zero when the high bit is set.
    serial_der = serial.to_bytes(serial.bit_length() // 8 + 1, "big")

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    return f"{b64(key_id)}.{b64(serial_der)}"


def directories() -> dict[str, str]:
    """CAA identifier or issuer-name text (lower case) -> ACME directory URL."""
    table = dict(DEFAULT_DIRECTORIES)
    for entry in settings.KEYCHEST_ARI_DIRECTORIES:
        key, _, url = entry.partition("=")
        if key.strip() and url.strip():
            table[key.strip().lower()] = url.strip()
        elif key.strip():
            table.pop(key.strip().lower(), None)  # "letsencrypt.org=" switches one off
    return table


def directory_for(issuer: str, table: dict[str, str]) -> str | None:
    identifiers = caa_identifiers(issuer)
    text = issuer.lower()
    for key, url in table.items():
        if key in identifiers or key in text:
            return url
    return None


@dataclass(frozen=True)
class AriAnswer:
    window_start: datetime | None = None
    window_end: datetime | None = None
    explanation_url: str = ""
    retry_after: timedelta | None = None
    not_found: bool = False
    error: str = ""


def _retry_after(headers: dict[str, str]) -> timedelta | None:
    value = headers.get("retry-after", "").strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    return None


class AriClient:
    """Reads directories once per client and renewal information per certificate."""

    def __init__(self, *, allow_private: bool, timeout: float) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        self._bases: dict[str, str | Exception] = {}

    def _get_json(self, url: str) -> tuple[int, object, dict[str, str]]:
        result = safehttp.get(url, allow_private=self.allow_private, timeout=self.timeout, max_bytes=MAX_BODY)
        if result.status != 200:
            return result.status, None, result.headers
        return result.status, jsonsafe.loads(result.body, strict_constants=False), result.headers

    def renewal_info_base(self, directory_url: str) -> str:
        known = self._bases.get(directory_url)
        if isinstance(known, str):
            return known
        if isinstance(known, Exception):
            raise known
        try:
            status, document, _ = self._get_json(directory_url)
            if status != 200:
                raise ValueError(f"directory answered HTTP {status}")
            base = document.get("renewalInfo") if isinstance(document, dict) else None
            if not isinstance(base, str) or not base.startswith(("https://", "http://")):
                raise ValueError("the directory has no renewalInfo URL")
        except Exception as error:
            self._bases[directory_url] = error  # one failure per run, not one per certificate
            raise
        self._bases[directory_url] = base.rstrip("/")
        return self._bases[directory_url]  # type: ignore[return-value]

    def fetch(self, directory_url: str, cert_id: str) -> AriAnswer:
        try:
            base = self.renewal_info_base(directory_url)
            status, document, headers = self._get_json(f"{base}/{cert_id}")
        except safehttp.TargetRefused as error:
            return AriAnswer(error=f"refused: {error}"[:300])
        except safehttp.FetchError as error:
            kind = "too large" if error.code == safehttp.TOO_LARGE else "network"
            return AriAnswer(error=f"{kind}: {error.message}"[:300])
        except ValueError as error:  # JSON, directory shape
            return AriAnswer(error=f"malformed: {error}"[:300])
        retry = _retry_after(headers)
        if status == 404:
            return AriAnswer(not_found=True, retry_after=retry)
        if status != 200:
            return AriAnswer(error=f"HTTP {status}", retry_after=retry)
        window = document.get("suggestedWindow") if isinstance(document, dict) else None
        start = parse_datetime(str(window.get("start", ""))) if isinstance(window, dict) else None
        end = parse_datetime(str(window.get("end", ""))) if isinstance(window, dict) else None
        if start is None or end is None or start.tzinfo is None or end.tzinfo is None or end < start:
            return AriAnswer(error="malformed: no valid suggestedWindow", retry_after=retry)
        explanation = document.get("explanationURL", "") if isinstance(document, dict) else ""
        if not isinstance(explanation, str) or not explanation.startswith(("https://", "http://")):
            explanation = ""
        return AriAnswer(window_start=start, window_end=end, explanation_url=explanation[:500], retry_after=retry)


def _next_check(now: datetime, answer: AriAnswer) -> datetime:
    if answer.error and answer.retry_after is None:
        return now + ERROR_BACKOFF
    if answer.not_found and answer.retry_after is None:
        return now + NOT_FOUND_POLL
    wait = answer.retry_after or DEFAULT_POLL
    wait = min(max(wait, MIN_POLL), MAX_POLL)
    # A little jitter, so certificates read together do not come due together forever.
    return now + wait * random.uniform(0.9, 1.1)


def renewal_info_refresh(
    *,
    certificate_ids: list[int],
    now: datetime | None = None,
    client: AriClient | None = None,
    limit: int = 500,
    budget: float = BUDGET_SECONDS,
) -> dict[str, int]:
    """Read ARI for the given certificates that are due; returns counts by outcome.

    The run stops after `budget` seconds (a CA timing out must not hold a worker); what is left
    stays due for the next run."""
    now = now or timezone.now()
    stop_at = time.monotonic() + budget
    table = directories()
    if not table or not certificate_ids:
        return {}
    client = client or AriClient(
        allow_private=settings.KEYCHEST_ALLOW_PRIVATE_TARGETS, timeout=float(settings.KEYCHEST_ARI_TIMEOUT)
    )
    rows = (
        Certificate.objects.filter(pk__in=certificate_ids, is_precertificate=False, is_ca=False, not_after__gt=now)
        .exclude(renewal_info__next_check_at__gt=now)
        .values_list("id", "issuer", "issuer_key_id", "serial")[:limit]
    )
    counts: dict[str, int] = {}
    for certificate_id, issuer, key_id, serial in rows:
        if time.monotonic() >= stop_at:
            break
        directory = directory_for(issuer, table)
        cert_id = ari_cert_id(key_id, serial) if directory else None
        if directory is None or cert_id is None:
            continue
        answer = client.fetch(directory, cert_id)
        fields: dict[str, object] = {"checked_at": now, "next_check_at": _next_check(now, answer)}
        if answer.error:
            fields["last_error"] = answer.error
            outcome = "error"
        elif answer.not_found:
            fields.update(window_start=None, window_end=None, explanation_url="", last_error="unknown to the CA")
            outcome = "not_found"
        else:
            fields.update(
                window_start=answer.window_start,
                window_end=answer.window_end,
                explanation_url=answer.explanation_url,
                last_error="",
            )
            outcome = "window"
        RenewalInfo.objects.update_or_create(certificate_id=certificate_id, defaults=fields)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def windows_for(sha256s: list[str]) -> dict[str, tuple[datetime, datetime]]:
    """Known ARI windows by certificate SHA-256 (one query), for the scanner's checks."""
    if not sha256s:
        return {}
    rows = RenewalInfo.objects.filter(
        certificate__sha256__in=sha256s, window_start__isnull=False, window_end__isnull=False
    ).values_list("certificate__sha256", "window_start", "window_end")
    return {sha: (start, end) for sha, start, end in rows if start is not None and end is not None}
