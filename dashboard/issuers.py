"""Which kind of issuer a certificate comes from, for the renewal calendar.

Three kinds, as the old service showed them: Let's Encrypt (short-lived, renewed by ACME
clients), CDN/hosting-managed (the provider renews; a failure is theirs to fix but yours to
notice) and other CAs (usually longer-lived, renewed by hand). Pure code: no Django.
"""

from __future__ import annotations

LETS_ENCRYPT = "letsencrypt"
MANAGED = "managed"
OTHER = "other"

KINDS = (LETS_ENCRYPT, MANAGED, OTHER)
KIND_LABELS = {LETS_ENCRYPT: "Let's Encrypt", MANAGED: "CDN / hosting-managed", OTHER: "Other CAs"}

# Issuer organisations that only issue for certificates their own platform manages.
_MANAGED_MARKERS = (
    "cloudflare",
    "amazon",
    "google trust services",
    "microsoft azure",
    "cpanel",
    "fastly",
    "akamai",
    "heroku",
    "wp engine",
    "shopify",
    "github",
    "netlify",
    "vercel",
)


def issuer_kind(issuer: str) -> str:
    """Classify an issuer distinguished name (RFC 4514 text or any text containing O=...)."""
    text = issuer.lower()
    if "let's encrypt" in text or "lets encrypt" in text or "letsencrypt" in text:
        return LETS_ENCRYPT
    if any(marker in text for marker in _MANAGED_MARKERS):
        return MANAGED
    return OTHER
