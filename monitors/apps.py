from __future__ import annotations

from django.apps import AppConfig


class MonitorsConfig(AppConfig):
    name = "monitors"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # certificates knows teams only through this provider ("who watches this name").
        from certificates.matching import register_watch_provider
        from monitors.domains import WatchedDomainProvider

        register_watch_provider(WatchedDomainProvider())
