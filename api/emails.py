"""Emails of the API app, one function per kind."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keychest import emails

if TYPE_CHECKING:
    from api.models import Claim, PendingEnrolment


def claim(claim: Claim, links: dict[str, str], items: list[PendingEnrolment]) -> None:
    """Ask the owner of the address to confirm (or refuse) a key a script claimed for it."""
    kind = "claim_account" if claim.kind == "new_account" else "claim_key"
    emails.send(
        kind,
        claim.email,
        {
            "claim": claim,
            "key_prefix": claim.api_key.display_prefix if claim.api_key else "",
            "requested_ip": claim.requested_ip or "unknown",
            "requested_at": claim.created_at,
            "user_agent": claim.user_agent,
            "items": items,
            "links": links,
            "expires_at": claim.expires_at(),
        },
    )
