"""The one place that renders and sends an email.

Every email kind has three templates under `templates/emails/<kind>/`: `subject.txt`,
`body.txt` and `body.html` (as healthchecks' hc/lib/emails.py does). Callers use one small
function per kind (e.g. `keychest.accounts.emails.invitation`) that calls `send()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string


def render(kind: str, context: Mapping[str, Any]) -> tuple[str, str, str]:
    """Subject (one line, no control characters), plain text body and HTML body."""
    ctx = {"site_url": settings.SITE_URL, **context}
    # Header injection guard: subjects are one line whatever the context holds.
    subject = " ".join(str(render_to_string(f"emails/{kind}/subject.txt", ctx)).split())
    text = render_to_string(f"emails/{kind}/body.txt", ctx)
    html = render_to_string(f"emails/{kind}/body.html", ctx)
    return subject, text, html


def build(
    kind: str,
    to: str | list[str],
    context: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    connection: Any = None,
) -> EmailMultiAlternatives:
    subject, text, html = render(kind, context)
    recipients = [to] if isinstance(to, str) else list(to)
    reply_to = [settings.KEYCHEST_REPLY_TO_EMAIL] if settings.KEYCHEST_REPLY_TO_EMAIL else None
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        headers=dict(headers or {}),
        reply_to=reply_to,
        connection=connection,
    )
    message.attach_alternative(html, "text/html")
    return message


def send(
    kind: str,
    to: str | list[str],
    context: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    connection: Any = None,
) -> None:
    """Render and send now; raises on SMTP errors so a Celery task can retry.

    Pass an open `connection` to send many emails over one SMTP session (weekly reports).
    """
    connection = connection or get_connection(fail_silently=False)
    build(kind, to, context, headers=headers, connection=connection).send()
