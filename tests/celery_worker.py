"""A real Celery worker subprocess for tests that need the whole queue path (Redis broker, a
worker in another process, the test database on PostgreSQL). Shared by every app's pipeline test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def celery_worker(extra_env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Start `celery -A keychest worker` against this test's database and REDIS_URL.

    The worker is another process, so it only sees committed rows: callers use
    `django_db(transaction=True)`. It skips (not fails) when there is no Redis or no PostgreSQL.
    """
    if not os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL is not set: no broker for a real worker")
    if connection.vendor != "postgresql":
        pytest.skip("the worker process needs the test database on PostgreSQL (DATABASE_URL)")
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "keychest.settings",
        "DEBUG": "0",
        "SECRET_KEY": "celery-pipeline-test-secret-key-0123456789abcdefghijklmnop",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "KEYCHEST_CACHE_PREFIX": f"kc-celery-test-{os.getpid()}",
        **(extra_env or {}),
    }
    from keychest.celery import app

    app.control.purge()  # stale messages of earlier runs; before the worker starts, not racing it
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "keychest", "worker", "--pool", "solo", "-l", "warning"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_for(condition: Callable[[], object], worker: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Poll until `condition()` is true; fail with the worker's stderr if it dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if worker.poll() is not None:
            raise AssertionError(f"the worker died: {worker.stderr.read().decode()[-3000:]}")  # type: ignore[union-attr]
        time.sleep(0.2)
    worker.terminate()
    raise AssertionError(f"timed out waiting for the worker: {worker.communicate(timeout=20)[1].decode()[-3000:]}")
