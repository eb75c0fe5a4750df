"""Emails of the accounts app, one function per kind."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keychest import emails

if TYPE_CHECKING:
    from keychest.accounts.models import Invitation


def address_confirmation(*, to: str, link: str, purpose: str) -> None:
    """Ask a new outside recipient to confirm. No text from the asker is in it (no team or
    channel name), so it cannot carry someone else's message."""
    emails.send("address_confirmation", to, {"link": link, "purpose": purpose})


def invitation(invitation: Invitation, link: str) -> None:
    emails.send(
        "invitation",
        invitation.email,
        {
            "team": invitation.team,
            "inviter": invitation.invited_by,
            "role": invitation.get_role_display(),
            "link": link,
            "expires_at": invitation.expires_at(),
        },
    )
