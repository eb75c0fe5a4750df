"""The one place that renders and sends an email.

Every email kind has three templates under `templates/emails/<kind>/`: `subject.txt`,
`body.txt` and `body.html` (as healthchecks' hc/lib/emails.py does). Callers use one small
function per kind (e.g. `keychest.accounts.emails.invitation`) that calls `send()`.
"""

from __future__ import annotations

import binascii
import secrets
from collections.abc import Mapping
from email.utils import formatdate, make_msgid
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.message import forbid_multi_line_headers
from django.core.mail.utils import DNS_NAME
from django.template.loader import render_to_string

# RFC 5322 2.1.1: a line is at most 998 octets; a longer one needs quoted-printable.
MAX_LINE_OCTETS = 998
_OWN_HEADERS = {"from", "to", "cc", "reply-to"}


def render(kind: str, context: Mapping[str, Any]) -> tuple[str, str, str]:
    """Subject (one line, no control characters), plain text body and HTML body."""
    ctx = {"site_url": settings.SITE_URL, **context}
    # Header injection guard: subjects are one line whatever the context holds.
    subject = " ".join(str(render_to_string(f"emails/{kind}/subject.txt", ctx)).split())
    text = render_to_string(f"emails/{kind}/body.txt", ctx)
    html = render_to_string(f"emails/{kind}/body.html", ctx)
    return subject, text, html


def _body(content: str) -> tuple[str, str]:
    """(Content-Transfer-Encoding, the body with "\\n" line ends), as Django chooses it: 8bit,
    or quoted-printable when a line is too long for SMTP."""
    text = content.replace("\r\n", "\n").replace("\r", "\n")
    data = text.encode()
    if len(data) > MAX_LINE_OCTETS and any(len(line) > MAX_LINE_OCTETS for line in data.split(b"\n")):
        return "quoted-printable", binascii.b2a_qp(data, istext=True).decode("ascii")
    return "8bit", text


class LeanMimeMessage:
    """A text + HTML message written out directly; what Django's backends want of `message()`.

    Django's own `message()` builds `email.message` objects and its compat32 generator folds and
    re-encodes every header on output: about 2.4 ms for one weekly report, as much as rendering
    it. Our emails have one shape (a UTF-8 text body, one HTML alternative, no attachments), so
    this writes that shape directly, with Django's header-injection guard and header encoding.
    """

    def __init__(self, headers: list[tuple[str, str]], parts: list[tuple[str, str]]) -> None:
        self.headers = headers
        self.parts = parts  # (mime type, content)

    def get_charset(self) -> None:  # the console and file backends ask; each part names its own
        return None

    def __getitem__(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def as_bytes(self, unixfrom: bool = False, linesep: str = "\n") -> bytes:
        return self.as_string(linesep=linesep).encode()

    def as_string(self, unixfrom: bool = False, linesep: str = "\n") -> str:
        encoded = [(mime, *_body(content)) for mime, content in self.parts]
        boundary = "==" + secrets.token_hex(12) + "=="
        while any(boundary in body for _, _, body in encoded):  # astronomically unlikely
            boundary = "==" + secrets.token_hex(12) + "=="
        lines = [
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
            "MIME-Version: 1.0",
            *(f"{name}: {value}" for name, value in self.headers),
            "",
        ]
        for mime, transfer, body in encoded:
            lines += [
                f"--{boundary}",
                f'Content-Type: {mime}; charset="utf-8"',
                "MIME-Version: 1.0",
                f"Content-Transfer-Encoding: {transfer}",
                "",
                body,
            ]
        lines += [f"--{boundary}--", ""]
        # Header.encode() folds long encoded headers with "\n ": those become linesep too.
        return "\n".join(lines).replace("\n", linesep) if linesep != "\n" else "\n".join(lines)


class LeanEmail(EmailMultiAlternatives):
    """`EmailMultiAlternatives` whose MIME form is a `LeanMimeMessage` when it has that shape."""

    def message(self, **kwargs: Any) -> Any:
        html = self.alternatives[0][0] if len(self.alternatives) == 1 else None
        if kwargs or self.attachments or not isinstance(html, str) or self.alternatives[0][1] != "text/html":
            return super().message(**kwargs)
        if (self.encoding or settings.DEFAULT_CHARSET).lower() not in ("utf-8", "utf8"):
            return super().message(**kwargs)
        encoding = "utf-8"
        extra = {name.lower(): value for name, value in self.extra_headers.items()}
        raw: list[tuple[str, Any]] = [("Subject", self.subject), ("From", extra.get("from", self.from_email))]
        for name, values in (("To", self.to), ("Cc", self.cc), ("Reply-To", self.reply_to)):
            if values:
                raw.append((name, ", ".join(str(v) for v in values)))
        if "date" not in extra:
            raw.append(("Date", formatdate(localtime=settings.EMAIL_USE_LOCALTIME)))
        if "message-id" not in extra:
            raw.append(("Message-ID", make_msgid(domain=DNS_NAME)))
        raw += [(name, value) for name, value in self.extra_headers.items() if name.lower() not in _OWN_HEADERS]
        headers = [(name, str(value)) for name, value in (forbid_multi_line_headers(n, v, encoding) for n, v in raw)]
        return LeanMimeMessage(headers, [(f"text/{self.content_subtype}", str(self.body)), ("text/html", html)])


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
    message = LeanEmail(
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
