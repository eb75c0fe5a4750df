"""The Celery app. Periodic work is declared here, next to nothing else, so it is easy to find."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keychest.settings")

app = Celery("keychest")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# api/: unconfirmed claimed keys, what they held and dormant accounts expire after 7 days.
app.conf.beat_schedule["api-claims-expire"] = {"task": "api.tasks.claims_expire", "schedule": 3600.0}
