"""The first start on a bare machine prints no broker warnings (issue 14 item 13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BASE = Path(__file__).resolve().parents[2]


def test_the_filesystem_broker_connects_without_a_hostname_warning(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    env.update(DJANGO_SETTINGS_MODULE="keychest.settings", KEYCHEST_VAR_DIR=str(tmp_path))
    code = (
        "import logging; logging.basicConfig();"
        "import django; django.setup();"
        "from django.conf import settings; from kombu import Connection;"
        "print(settings.CELERY_BROKER_URL);"
        "Connection(settings.CELERY_BROKER_URL, transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS)._info()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip().startswith("filesystem://")
    assert "No hostname was supplied" not in done.stderr
