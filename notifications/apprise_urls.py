"""Apprise URLs: one URL reaches Teams, Telegram, Discord, ntfy, Gotify, PagerDuty, Opsgenie and
the 100+ other services Apprise speaks. Checking one, masking it, and what in it is secret.

Sending (notifications.transports.AppriseTransport) runs under `kcproto.socketguard`: resolve
once, refuse non-public addresses unless KEYCHEST_ALLOW_PRIVATE_TARGETS, connect to the checked
address, one deadline, no secret in any log record (docs/notifications.md, "Apprise channels").
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

# Apprise services that are not network services (desktop notifications of the machine itself).
LOCAL_SCHEMAS = frozenset({"dbus", "kde", "qt", "glib", "gnome", "macosx", "windows"})


class InvalidAppriseUrl(ValueError):
    """Not a URL of a network service Apprise knows."""


def apprise_plugin(url: str) -> Any:
    """A fresh Apprise plugin for `url` (never shared between sends); else InvalidAppriseUrl."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if not scheme:
        raise InvalidAppriseUrl("An Apprise URL looks like service://…, e.g. tgram://bottoken/chat_id.")
    if scheme in LOCAL_SCHEMAS:
        raise InvalidAppriseUrl(f"{scheme}:// notifies the server's own desktop, not a service.")
    # Imported here, not at module level: Apprise loads its 100+ service modules (about 1 s of
    # CPU), which a web process should pay only when someone adds an Apprise channel.
    import apprise

    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None or not getattr(plugin, "enabled", True):
        raise InvalidAppriseUrl(f"Apprise does not know or cannot use {scheme}:// URLs like this one.")
    return plugin


def apprise_url_check(url: str) -> str:
    """The masked form of a usable Apprise URL (shown back instead of it); else InvalidAppriseUrl."""
    return str(apprise_plugin(url.strip()).url(privacy=True))[:500]


def apprise_secrets(url: str) -> tuple[str, ...]:
    """Everything in the URL that may be a credential, longest first, for log redaction:
    the whole URL, the user and password, every path segment and every query value."""
    parts = urlsplit(url)
    found = {url, parts.username or "", parts.password or "", parts.fragment}
    netloc = parts.netloc.rsplit("@", 1)
    if len(netloc) == 2:
        found.add(netloc[0])
    found.update(parts.path.split("/"))
    found.update(value for _, value in parse_qsl(parts.query))
    found |= {unquote(f) for f in found}
    # Short pieces ("443", "v1") would redact ordinary words; real tokens are longer.
    return tuple(sorted((f for f in found if len(f) >= 6), key=len, reverse=True))
