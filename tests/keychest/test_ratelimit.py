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
