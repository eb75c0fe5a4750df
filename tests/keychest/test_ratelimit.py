from __future__ import annotations

import threading

from keychest.ratelimit import Limit, hit, peek

LIMIT = Limit(scope="test", count=3, seconds=60)


def test_it_allows_up_to_the_limit_then_refuses() -> None:
    verdicts = [hit(LIMIT, "1.2.3.4", now=1000.0) for _ in range(5)]
    assert [v.allowed for v in verdicts] == [True, True, True, False, False]
    assert verdicts[-1].used == 5
    assert 0 < verdicts[-1].retry_after <= 60


def test_keys_and_windows_are_independent() -> None:
    for _ in range(3):
        hit(LIMIT, "a", now=1000.0)
    assert not hit(LIMIT, "a", now=1000.0).allowed
    assert hit(LIMIT, "b", now=1000.0).allowed
    assert hit(LIMIT, "a", now=1000.0 + 60).allowed
    assert peek(LIMIT, "a", now=1000.0 + 60) == 1


def test_concurrent_hits_are_counted_exactly() -> None:
    def worker() -> None:
        for _ in range(50):
            hit(LIMIT, "race", now=5000.0)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peek(LIMIT, "race", now=5000.0) == 400


# --- leased counters (the API's per-key and per-address limits) ---------------------------------
import pytest  # noqa: E402

from keychest import ratelimit  # noqa: E402
from keychest.ratelimit import LeasedCounters, redis_client  # noqa: E402

needs_redis = pytest.mark.skipif(redis_client() is None, reason="leases are taken from Redis (REDIS_URL)")


def _counting_script_calls() -> list[int]:
    """Count this thread's lease requests to Redis."""
    client = redis_client()
    real = client.register_script(ratelimit._LEASE)
    calls: list[int] = []

    def script(**kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(**kwargs)

    client._keychest_lease = script
    return calls


@needs_redis
def test_leases_never_allow_more_than_the_limit_across_processes() -> None:
    limit = [(Limit("lease", 100, 60), "k")]
    calls = _counting_script_calls()
    one, other = LeasedCounters(), LeasedCounters()  # two web processes
    allowed = 0
    for _ in range(150):
        for process in (one, other):
            allowed += process.take(limit, lease=32, now=7000.0) == 0
    assert allowed == 100  # every leased hit was spent, none beyond the limit
    # Leases shrink with what is left (a sixteenth, then one by one), and a spent window is
    # refused locally: far fewer round trips than hits.
    assert 0 < len(calls) < 60


@needs_redis
def test_a_refusal_says_how_long_to_wait_and_counts() -> None:
    limit = [(Limit("lease", 1, 60), "k")]
    counters = LeasedCounters()
    calls = _counting_script_calls()
    assert counters.take(limit, lease=32, now=7210.0) == 0
    assert counters.take(limit, lease=32, now=7210.0) == 50  # 7210 is 10 s into its window
    assert peek(Limit("lease", 1, 60), "k", now=7210.0) == 2
    # Refused until the window ends, without asking Redis again.
    assert counters.take(limit, lease=32, now=7250.0) == 10
    assert len(calls) == 2


@needs_redis
def test_lease_one_counts_every_hit_in_redis() -> None:
    limit = [(Limit("lease", 1000, 60), "k")]
    calls = _counting_script_calls()
    counters = LeasedCounters()
    for _ in range(5):
        assert counters.take(limit, lease=1, now=7320.0) == 0
    assert len(calls) == 5 and peek(Limit("lease", 1000, 60), "k", now=7320.0) == 5


@needs_redis
def test_leases_end_with_their_window() -> None:
    limit = Limit("lease", 1000, 60)
    calls = _counting_script_calls()
    counters = LeasedCounters()
    assert counters.take([(limit, "k")], lease=32, now=7440.0) == 0
    assert counters.take([(limit, "k")], lease=32, now=7441.0) == 0
    assert len(calls) == 1  # the second hit came from the lease
    assert counters.take([(limit, "k")], lease=32, now=7500.0) == 0  # the next window
    assert len(calls) == 2 and peek(limit, "k", now=7500.0) == 32


@needs_redis
def test_concurrent_takes_allow_exactly_the_limit() -> None:
    limit = [(Limit("lease", 300, 60), "race")]
    counters = LeasedCounters()
    allowed: list[int] = []

    def worker() -> None:
        for _ in range(50):
            if counters.take(limit, lease=32, now=7620.0) == 0:
                allowed.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 300


def test_without_redis_each_hit_is_counted(monkeypatch) -> None:
    monkeypatch.setattr(ratelimit, "redis_client", lambda: None)
    limit = [(Limit("lease", 3, 60), "k")]
    counters = LeasedCounters()
    waits = [counters.take(limit, lease=32, now=7740.0) for _ in range(4)]
    assert waits[:3] == [0, 0, 0] and waits[3] > 0
    assert peek(Limit("lease", 3, 60), "k", now=7740.0) == 4


@needs_redis
def test_with_redis_down_a_process_spends_its_lease_then_fails_closed(settings) -> None:
    import redis

    limit = [(Limit("lease", 10_000, 60), "k")]
    counters = LeasedCounters()
    assert counters.take(limit, lease=32, now=7860.0) == 0  # leased 32, spent 1
    down = {**settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:1/0"}
    settings.CACHES = {**settings.CACHES, "default": down}
    assert [counters.take(limit, lease=32, now=7860.0) for _ in range(31)] == [0] * 31
    with pytest.raises(redis.exceptions.ConnectionError):
        counters.take(limit, lease=32, now=7860.0)  # never allowed unthrottled
