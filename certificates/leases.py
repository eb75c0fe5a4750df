"""Which ingester reads which CT log: a lease per log in PostgreSQL.

Several ingesters may run at once (followers on several machines for scale, a `ct_ingest --once`
started by hand beside the `ct` service, a follower started twice by mistake). Each log is read
by one of them at a time: the holder named in `CTLog.lease_holder` until `lease_until`. Times are
the database's (`Now()`), so the holders' clocks do not matter.

- A holder renews its leases every few seconds; one that crashed simply stops renewing, and its
  logs are free again `KEYCHEST_CT_LEASE_SECONDS` later.
- The lease is what keeps two ingesters from reading the same entries. What makes a stalled
  holder that lost its lease harmless is the commit itself: it moves the position only from the
  position it started at and only while the row still names it (`certificates/ingest.py`), so
  there is never a gap and never a double, whoever wins.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Now
from django.utils import timezone

from certificates.models import CTFollower, CTLog

FOLLOWER = "follow"
ONCE = "once"


def holder_new(kind: str) -> str:
    """A name for one ingester: its kind, host and process, and a random part (a restarted
    process with the same pid is another holder)."""
    return f"{kind}:{socket.gethostname()[:100]}:{os.getpid()}:{secrets.token_hex(4)}"


def lease_expiry() -> CombinedExpression:
    return Now() + timedelta(seconds=settings.KEYCHEST_CT_LEASE_SECONDS)


def _free() -> Q:
    return Q(lease_holder="") | Q(lease_until=None) | Q(lease_until__lt=Now())


def ct_lease_take(*, log_pk: int, holder: str) -> bool:
    """Take (or keep) the lease of one log; False when another holder has it."""
    return bool(
        CTLog.objects.filter(pk=log_pk)
        .filter(_free() | Q(lease_holder=holder))
        .update(lease_holder=holder, lease_until=lease_expiry())
    )


def ct_leases_take(*, holder: str, want: int, exclude: Iterable[int] = (), log_pk: int | None = None) -> list[int]:
    """Take up to `want` free leases of enabled, not halted logs (only `log_pk`, if given); returns
    their ids."""
    if want <= 0:
        return []
    candidates = CTLog.objects.filter(_free(), enabled=True, halted_reason="")
    if log_pk is not None:
        candidates = candidates.filter(pk=log_pk)
    with transaction.atomic():
        # SKIP LOCKED: two holders taking at once each get other logs instead of waiting.
        ids = list(
            candidates.select_for_update(skip_locked=True)
            .exclude(pk__in=list(exclude))
            .order_by("pk")
            .values_list("pk", flat=True)[:want]
        )
        if ids:
            CTLog.objects.filter(_free(), pk__in=ids).update(lease_holder=holder, lease_until=lease_expiry())
    return ids


def ct_leases_renew(*, holder: str, log_pks: Iterable[int]) -> set[int]:
    """Renew our leases; returns the ids still ours (a lease that ran out and was taken is lost)."""
    pks = list(log_pks)
    if not pks:
        return set()
    CTLog.objects.filter(pk__in=pks, lease_holder=holder).update(lease_until=lease_expiry())
    return set(CTLog.objects.filter(pk__in=pks, lease_holder=holder).values_list("pk", flat=True))


def ct_leases_release(*, holder: str, log_pks: Iterable[int] | None = None) -> int:
    """Give leases back at once (a clean stop), so another holder need not wait for them to run out."""
    qs = CTLog.objects.filter(lease_holder=holder)
    if log_pks is not None:
        qs = qs.filter(pk__in=list(log_pks))
    return qs.update(lease_holder="", lease_until=None)


def ct_follower_alive(*, holder: str) -> None:
    """Say this follower is running (every few seconds): the others count it when sharing logs,
    even while it holds none yet."""
    if not CTFollower.objects.filter(holder=holder).update(alive_until=lease_expiry()):
        alive_until = timezone.now() + timedelta(seconds=settings.KEYCHEST_CT_LEASE_SECONDS)
        CTFollower.objects.create(holder=holder, alive_until=alive_until)
    # Followers that stopped without a word (killed): gone from the count once their time ran out.
    CTFollower.objects.filter(alive_until__lt=Now() - timedelta(minutes=10)).delete()


def ct_follower_gone(*, holder: str) -> None:
    CTFollower.objects.filter(holder=holder).delete()


def ct_leases_share(*, holder: str) -> int:
    """How many logs this follower should hold: an equal share among the live followers.

    A new follower makes the others' share smaller; they give logs back and it takes them. Capped
    by KEYCHEST_CT_FOLLOW_MAX_LOGS (0: no cap)."""
    total = CTLog.objects.filter(enabled=True, halted_reason="").count()
    live = set(CTFollower.objects.filter(alive_until__gte=Now()).values_list("holder", flat=True))
    live.add(holder)
    share = math.ceil(total / len(live)) if total else 0
    cap = settings.KEYCHEST_CT_FOLLOW_MAX_LOGS
    return min(share, cap) if cap else share


def ct_logs_mark_read(*, holder: str, log_pks: Iterable[int]) -> None:
    """Record that these logs' heads were read and verified just now (the tailers read them every
    second or so; this is written every few seconds, not per read)."""
    pks = list(log_pks)
    if pks:
        CTLog.objects.filter(pk__in=pks, lease_holder=holder).update(
            last_success_at=Now(), consecutive_failures=0, backoff_until=None
        )
