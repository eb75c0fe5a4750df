"""The audit trail of API access: one row per step, shown to the team on the API keys page."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from api.models import ApiKey, AuditEntry

if TYPE_CHECKING:
    from keychest.accounts.models import Team, User

log = logging.getLogger("keychest.audit")


def audit_record(
    *,
    team: Team | None,
    action: str,
    user: User | None = None,
    api_key: ApiKey | None = None,
    ip: str | None = None,
    detail: str = "",
) -> AuditEntry | None:
    """Store one step; steps that belong to no team (refused before any account) go to the log only."""
    ip = ip if ip and ip != "unknown" else None
    log.info(
        "api audit: %s team=%s key=%s ip=%s %s",
        action,
        getattr(team, "pk", None),
        getattr(api_key, "display_prefix", ""),
        ip,
        detail,
    )
    if team is None:
        return None
    return AuditEntry.objects.create(
        team=team,
        action=action,
        user=user,
        api_key=api_key,
        key_prefix=api_key.display_prefix if api_key else "",
        ip=ip,
        detail=detail[:300],
    )
