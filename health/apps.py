from __future__ import annotations

from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "health"
    label = "health"
    verbose_name = "Monitoring health"
    default_auto_field = "django.db.models.BigAutoField"
