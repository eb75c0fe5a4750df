"""Kill a real `ct_ingest` process mid-run (SIGKILL) and start it again: no gap, no duplicate."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from certificates.models import Certificate, CertificateSource, CTLog
from tests.certificates.helpers import command_env, db_log

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a second process needs a shared database server")
def test_a_killed_ingester_resumes_with_no_gap_and_no_duplicate(local_logs, ct_settings) -> None:
    local = local_logs("rfc6962", max_batch=25)
    local.add_random(3000)
    log = db_log(local)
    env = command_env(ct_settings, KEYCHEST_CT_CHUNK="50")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "ct_ingest", "--once"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            position = CTLog.objects.filter(pk=log.pk).values_list("position", flat=True).first() or 0
            if position >= 200:
                break
            assert proc.poll() is None, "the ingester finished before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = CTLog.objects.get(pk=log.pk).position
    assert 200 <= killed_at < 3000
    refs = CertificateSource.objects.filter(kind="ct").exclude(ref__endswith=":issuer")
    assert refs.count() == killed_at  # exactly what the committed position says, nothing half-done

    subprocess.run(
        [sys.executable, "manage.py", "ct_ingest", "--once"], cwd=ROOT, env=env, check=True, capture_output=True
    )
    indexes = sorted(int(r.rsplit(":", 1)[1]) for r in refs.values_list("ref", flat=True))
    assert indexes == list(range(3000))
    assert Certificate.objects.filter(is_ca=False).count() == 3000
    assert CTLog.objects.get(pk=log.pk).position == 3000
