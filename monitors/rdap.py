"""RDAP (RFC 9082/9083/9224) for domain registration data: bootstrap, one bounded GET, parsing. Pure.

- Bootstrap: IANA's `dns.json` format (RFC 9224) maps TLDs to RDAP base URLs; the longest
  matching label suffix wins.
- Fetching goes through `kcproto.netguard`: the RDAP host is resolved once, every address it
  resolves to must be public (unless private targets are allowed), and the connection goes to
  the checked address, so DNS rebinding cannot swap it. Connect, every read and the whole
  request share one deadline; the body is capped; redirects (a few registries use them) are
  followed only to http(s) URLs and each hop is checked again (all of it `keychest.safehttp`).
- Parsing takes `events` (expiration, registration, last changed), the registrar entity's name
  (jCard `fn`) and the `status` list, and refuses documents that are not RDAP domain objects.

No Django imports: the caller passes the settings.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from keychest import jsonsafe, safehttp

BUNDLED_BOOTSTRAP = Path(__file__).resolve().parent / "data" / "rdap_dns.json"
MAX_BODY_BYTES = 256 * 1024
MAX_REDIRECTS = 3
USER_AGENT = "KeyChest-RDAP/1.0 (+domain registration expiry monitor)"
MAX_STATUSES = 20
# Entities nest inside entities, each with a vCard array: deeper than API bodies, still bounded.
OUTSIDE_JSON_DEPTH = 64

# Error codes stored in DomainRegistration.last_error_code (short, stable, shown to users).
NOT_FOUND = "not_found"
RATE_LIMITED = "rate_limited"
SERVER_ERROR = "server_error"
MALFORMED = "malformed"
TOO_LARGE = safehttp.TOO_LARGE
TIMEOUT = safehttp.TIMEOUT
REFUSED = safehttp.REFUSED
CONNECTION = safehttp.CONNECTION
HTTP_ERROR = safehttp.HTTP_ERROR
NO_SERVER = "no_server"
# Errors that say "this RDAP server is unwell": the server backs off, not only the domain.
SERVER_TROUBLE = frozenset({RATE_LIMITED, SERVER_ERROR, TIMEOUT, CONNECTION})


class BootstrapError(ValueError):
    """The bootstrap file cannot be read."""


class RdapError(Exception):
    """One RDAP query failed; `code` is one of the constants above."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message[:300]
        self.retry_after = retry_after
        self.status = status


@dataclass(frozen=True)
class Bootstrap:
    """TLD -> RDAP base URLs (https first), as the IANA registry publishes them."""

    services: dict[str, tuple[str, ...]]
    publication: str = ""

    def base_urls(self, domain: str) -> tuple[str, ...]:
        """Base URLs for `domain` (longest label suffix wins, RFC 9224 §4); () when none."""
        labels = domain.lower().rstrip(".").split(".")
        for start in range(len(labels)):
            urls = self.services.get(".".join(labels[start:]))
            if urls:
                return urls
        return ()

    def server_for(self, domain: str) -> str:
        urls = self.base_urls(domain)
        return urls[0] if urls else ""


def parse_bootstrap(data: bytes | str) -> Bootstrap:
    try:
        doc = jsonsafe.loads(data, max_depth=OUTSIDE_JSON_DEPTH, strict_constants=False)
    except ValueError as exc:
        raise BootstrapError(f"RDAP bootstrap is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), list):
        raise BootstrapError("RDAP bootstrap has no services list")
    services: dict[str, tuple[str, ...]] = {}
    for entry in doc["services"]:
        if not (
            isinstance(entry, list) and len(entry) >= 2 and isinstance(entry[0], list) and isinstance(entry[1], list)
        ):
            raise BootstrapError("RDAP bootstrap service entry is not [[tlds], [urls]]")
        urls = [str(u) for u in entry[1] if isinstance(u, str) and u.startswith(("https://", "http://"))]
        # RFC 9224 §3: prefer https when both are listed.
        urls.sort(key=lambda u: not u.startswith("https://"))
        normalised = tuple(u if u.endswith("/") else u + "/" for u in urls)
        if not normalised:
            continue
        for tld in entry[0]:
            if isinstance(tld, str) and tld.strip():
                services[tld.strip().lower().rstrip(".")] = normalised
    return Bootstrap(services=services, publication=str(doc.get("publication") or ""))


def load_bootstrap(source: str | None = None, *, allow_private: bool, timeout: float = 10.0) -> Bootstrap:
    """From a path or an http(s) URL (fetched through the same guard); the bundled snapshot when empty."""
    if not source:
        return parse_bootstrap(BUNDLED_BOOTSTRAP.read_bytes())
    if source.startswith(("http://", "https://")):
        try:
            status, body, _headers = http_get(
                source, allow_private=allow_private, timeout=timeout, max_bytes=4 * 1024 * 1024
            )
        except RdapError as exc:
            raise BootstrapError(f"cannot fetch the RDAP bootstrap: {exc.message}") from None
        if status != 200:
            raise BootstrapError(f"cannot fetch the RDAP bootstrap: HTTP {status}")
        return parse_bootstrap(body)
    try:
        return parse_bootstrap(Path(source).read_bytes())
    except OSError as exc:
        raise BootstrapError(f"cannot read the RDAP bootstrap: {exc}") from None


# --- HTTP -------------------------------------------------------------------------------------
def http_get(
    url: str,
    *,
    allow_private: bool,
    timeout: float,
    max_bytes: int = MAX_BODY_BYTES,
    ssl_context: ssl.SSLContext | None = None,
    accept: str = "application/rdap+json, application/json;q=0.9",
) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, lower-cased headers) of a GET through `keychest.safehttp` (one deadline,
    capped body, redirects re-checked); RdapError with the same codes on failure."""
    try:
        result = safehttp.get(
            url,
            allow_private=allow_private,
            timeout=timeout,
            max_bytes=max_bytes,
            headers={"Accept": accept, "User-Agent": USER_AGENT},
            ssl_context=ssl_context,
        )
    except safehttp.FetchError as error:
        raise RdapError(error.code, f"RDAP: {error.message}") from None
    return result.status, result.body, result.headers


def _retry_after(value: str | None, now: datetime) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), 7 * 86400))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, min((when - now).total_seconds(), 7 * 86400.0))


# --- parsing ----------------------------------------------------------------------------------
@dataclass
class RdapRecord:
    """What one RDAP domain answer says about the registration."""

    domain: str
    expires_at: datetime | None = None
    registered_at: datetime | None = None
    changed_at: datetime | None = None
    registrar: str = ""
    statuses: list[str] = field(default_factory=list)
    handle: str = ""


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise RdapError(MALFORMED, f"unreadable eventDate {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _vcard_fn(entity: dict[str, Any]) -> str:
    card = entity.get("vcardArray")
    if isinstance(card, list) and len(card) == 2 and isinstance(card[1], list):
        for prop in card[1]:
            if isinstance(prop, list) and len(prop) >= 4 and prop[0] == "fn" and isinstance(prop[3], str):
                return prop[3].strip()
    return ""


def _registrar(entities: Any) -> str:
    if not isinstance(entities, list):
        return ""
    for entity in entities:
        if not isinstance(entity, dict):
            continue
        roles = entity.get("roles")
        if isinstance(roles, list) and "registrar" in roles:
            name = _vcard_fn(entity)
            if not name:
                for public_id in entity.get("publicIds") or []:
                    if isinstance(public_id, dict) and public_id.get("identifier"):
                        name = f"IANA {public_id.get('identifier')}"
                        break
            return (name or str(entity.get("handle") or ""))[:200]
    return ""


def parse_domain(data: bytes, domain: str) -> RdapRecord:
    """The registration facts of an RDAP domain object; RdapError(MALFORMED) when it is not one."""
    try:
        doc = jsonsafe.loads(data, max_depth=OUTSIDE_JSON_DEPTH, strict_constants=False)
    except ValueError:  # malformed, not UTF-8, or nested deeper than any RDAP object
        raise RdapError(MALFORMED, "RDAP answer is not JSON") from None
    if not isinstance(doc, dict):
        raise RdapError(MALFORMED, "RDAP answer is not a JSON object")
    kind = doc.get("objectClassName")
    if kind is not None and kind != "domain":
        raise RdapError(MALFORMED, f"RDAP answer is a {str(kind)[:40]!r}, not a domain")
    events = doc.get("events", [])
    if not isinstance(events, list):
        raise RdapError(MALFORMED, "RDAP events is not a list")
    record = RdapRecord(domain=domain, handle=str(doc.get("handle") or "")[:100])
    for event in events:
        if not isinstance(event, dict):
            raise RdapError(MALFORMED, "RDAP event is not an object")
        action = str(event.get("eventAction") or "").lower()
        when = _parse_time(event.get("eventDate"))
        if action == "expiration":
            record.expires_at = when
        elif action == "registration":
            record.registered_at = when
        elif action == "last changed":
            record.changed_at = when
    statuses = doc.get("status", [])
    if not isinstance(statuses, list):
        raise RdapError(MALFORMED, "RDAP status is not a list")
    record.statuses = [str(s)[:60] for s in statuses if isinstance(s, str)][:MAX_STATUSES]
    record.registrar = _registrar(doc.get("entities"))
    return record


def domain_url(base_url: str, domain: str) -> str:
    return base_url + "domain/" + quote(domain, safe="")


def query_domain(
    base_url: str,
    domain: str,
    *,
    allow_private: bool,
    timeout: float,
    max_bytes: int = MAX_BODY_BYTES,
    ssl_context: ssl.SSLContext | None = None,
) -> RdapRecord:
    """Ask one RDAP server about one domain; RdapError with a code for every failure."""
    status, body, headers = http_get(
        domain_url(base_url, domain),
        allow_private=allow_private,
        timeout=timeout,
        max_bytes=max_bytes,
        ssl_context=ssl_context,
    )
    if status == 200:
        return parse_domain(body, domain)
    if status == 404:
        raise RdapError(NOT_FOUND, f"{domain} is not registered (RDAP 404)", status=status)
    retry_after = _retry_after(headers.get("retry-after"), datetime.now(UTC))
    if status == 429:
        raise RdapError(RATE_LIMITED, "RDAP server rate limit (429)", retry_after=retry_after, status=status)
    if status >= 500:
        raise RdapError(SERVER_ERROR, f"RDAP server error ({status})", retry_after=retry_after, status=status)
    raise RdapError(HTTP_ERROR, f"RDAP server answered {status}", status=status)
