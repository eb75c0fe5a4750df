from __future__ import annotations

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Start-up registrations (docs/architecture.md), here because services import models,
        # which the app registry loads only after this module.
        from events.services import events_subscribe
        from keychest.accounts.services import team_setup_register
        from notifications import tasks  # noqa: F401 - see below
        from notifications.services import channel_default_create, events_dispatch_soon

        # events/ sits below this app and learns what to do after a commit that recorded events
        # only through this hook.
        events_subscribe(events_dispatch_soon)
        # Every new team starts with an "email every member" channel: alerts go somewhere.
        team_setup_register(channel_default_create)
        # Services queue tasks by their registered names; importing the task module registers
        # them in every process (web too), so that a name resolves to its task and
        # CELERY_TASK_ALWAYS_EAGER applies.
