"""Signed one-click unsubscribe tokens (RFC 8058) for the weekly report and the daily digest."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.core import signing
from django.urls import reverse

if TYPE_CHECKING:
    from keychest.accounts.models import User

SALT = "keychest.notifications.unsubscribe"
LISTS = {"weekly": "the weekly report", "digest": "the daily alert summary"}


def unsubscribe_token(*, user: User, what: str) -> str:
    # No expiry: an unsubscribe link in a year-old email must still work.
    return signing.Signer(salt=SALT).sign_object({"u": str(user.uuid), "l": what}, compress=True)


def unsubscribe_read(token: str) -> tuple[str, str] | None:
    """(user uuid, list) for a genuine token, else None."""
    try:
        data = signing.Signer(salt=SALT).unsign_object(token)
    except (signing.BadSignature, ValueError):
        return None
    if not isinstance(data, dict) or data.get("l") not in LISTS or not isinstance(data.get("u"), str):
        return None
    return data["u"], data["l"]


def unsubscribe_url(*, user: User, what: str) -> str:
    return settings.SITE_URL + reverse("unsubscribe", args=[unsubscribe_token(user=user, what=what)])


def unsubscribe_headers(*, user: User, what: str) -> dict[str, str]:
    """RFC 2369 + RFC 8058 headers; the URL holds only a signed token, no user text."""
    return {
        "List-Unsubscribe": f"<{unsubscribe_url(user=user, what=what)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
