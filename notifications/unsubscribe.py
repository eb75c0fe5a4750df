"""Signed one-click unsubscribe tokens (RFC 8058) for every email a person did not ask for each time:
the weekly report, the daily digest and alert emails.

A token names what it switches off and for whom: an account ("u": user uuid) for the weekly
report, the digest and alert emails to a member; or a channel and an address ("c", "a") for
alert emails to an extra address of an email channel, which has no account to hold a preference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.core import signing
from django.urls import reverse

if TYPE_CHECKING:
    from keychest.accounts.models import User
    from notifications.models import Channel

SALT = "keychest.notifications.unsubscribe"
LISTS = {"weekly": "the weekly report", "digest": "the daily alert summary", "alerts": "alert emails"}
ALERTS = "alerts"


def _sign(data: dict[str, str]) -> str:
    # No expiry: an unsubscribe link in a year-old email must still work.
    return signing.Signer(salt=SALT).sign_object(data, compress=True)


def _unsign(token: str) -> dict[str, object] | None:
    try:
        data = signing.Signer(salt=SALT).unsign_object(token)
    except (signing.BadSignature, ValueError):
        return None
    if not isinstance(data, dict) or data.get("l") not in LISTS:
        return None
    return data


def unsubscribe_token(*, user: User, what: str) -> str:
    return _sign({"u": str(user.uuid), "l": what})


def unsubscribe_read(token: str) -> tuple[str, str] | None:
    """(user uuid, list) for a genuine account token, else None."""
    data = _unsign(token)
    if data is None or not isinstance(data.get("u"), str):
        return None
    return str(data["u"]), str(data["l"])


def address_unsubscribe_token(*, channel: Channel, address: str) -> str:
    return _sign({"c": str(channel.uuid), "a": address.lower(), "l": ALERTS})


def address_unsubscribe_read(token: str) -> tuple[str, str] | None:
    """(channel uuid, address) for a genuine channel-address token, else None."""
    data = _unsign(token)
    if data is None or data["l"] != ALERTS or not isinstance(data.get("c"), str) or not isinstance(data.get("a"), str):
        return None
    return str(data["c"]), str(data["a"])


def _url(token: str) -> str:
    return settings.SITE_URL + reverse("unsubscribe", args=[token])


def unsubscribe_url(*, user: User, what: str) -> str:
    return _url(unsubscribe_token(user=user, what=what))


def address_unsubscribe_url(*, channel: Channel, address: str) -> str:
    return _url(address_unsubscribe_token(channel=channel, address=address))


def headers_for(url: str) -> dict[str, str]:
    """RFC 2369 + RFC 8058 headers; the URL holds only a signed token, no user text."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def unsubscribe_headers(*, user: User, what: str) -> dict[str, str]:
    return headers_for(unsubscribe_url(user=user, what=what))
