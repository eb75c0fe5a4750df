from __future__ import annotations

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Start-up registration (docs/architecture.md): events/ sits below this app and learns
        # what to do after a commit that recorded events only through this hook.
        from events.services import events_subscribe
        from notifications import tasks  # noqa: F401 - see below
        from notifications.services import events_dispatch_soon

        events_subscribe(events_dispatch_soon)
        # Services queue tasks by their registered names; importing the task module registers
        # them in every process (web too), so that a name resolves to its task and
        # CELERY_TASK_ALWAYS_EAGER applies.
