from __future__ import annotations

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: services import models, which the app registry loads
        # only after this module (Django's documented place for such wiring).
        from keychest.accounts.services import team_setup_register
        from notifications.services import channel_default_create

        # Every new team starts with an "email every member" channel: alerts go somewhere.
        team_setup_register(channel_default_create)
