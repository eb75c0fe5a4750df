"""Emails of the accounts app, one function per kind."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keychest import emails

if TYPE_CHECKING:
    from keychest.accounts.models import Invitation


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
