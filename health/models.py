"""Proof that monitoring works: heartbeats written by the pipeline itself."""

from __future__ import annotations

from django.db import models


class Heartbeat(models.Model):
    """The last time a named piece of the pipeline was seen working, and what it saw.

    `pipeline` is written by a task that beat schedules and a worker runs, so its age proves
    beat, the broker, a worker and the database all work; `canary` is the last scan of the
    configured canary target through the real scanner.
    """

    name = models.CharField(max_length=40, primary_key=True)
    at = models.DateTimeField()
    ok = models.BooleanField(default=True)
    summary = models.CharField(max_length=500, blank=True)
    details = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%Y-%m-%d %H:%M:%S} ({'ok' if self.ok else 'failing'})"
