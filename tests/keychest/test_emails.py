"""keychest.emails writes text + HTML messages itself; they must read as Django's would."""

from __future__ import annotations

import email
import email.policy

import pytest
from django.core.mail import BadHeaderError, EmailMultiAlternatives

from keychest.emails import LeanEmail, LeanMimeMessage

HEADERS = {
    "List-Unsubscribe": "<https://keychest.example/notifications/unsubscribe/abc/>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    "Message-ID": "<weekly-2026-03-23-x@keychest.example>",
    "Auto-Submitted": "auto-generated",
}


def _pair(cls, *, subject: str, text: str, html: str, **kwargs):
    message = cls(
        subject=subject,
        body=text,
        from_email="KeyChést <noreply@keychest.example>",
        to=["Zoë <zoe@example.org>", "bob@example.org"],
        reply_to=["help@keychest.example"],
        headers=HEADERS,
        **kwargs,
    )
    message.attach_alternative(html, "text/html")
    return message


def _parsed(message) -> email.message.EmailMessage:
    return email.message_from_bytes(message.message().as_bytes(linesep="\r\n"), policy=email.policy.default)


@pytest.mark.parametrize(
    "subject,text,html",
    [
        ("[KeyChest] Weekly report: all good", "Hello\nAll good.\n", "<p>All good</p>\n"),
        ("Ünïcode subject — " + "long " * 30, "Zoë's servers: ✓\n" * 50, "<td>" + "x" * 1500 + "</td>\n"),
        ("Dots", ".\n..leading dots\n.\n", "<p>\n.\n</p>"),
    ],
)
def test_a_lean_message_reads_exactly_like_djangos(subject: str, text: str, html: str) -> None:
    lean, django = (
        _parsed(_pair(LeanEmail, subject=subject, text=text, html=html)),
        _parsed(_pair(EmailMultiAlternatives, subject=subject, text=text, html=html)),
    )
    assert isinstance(_pair(LeanEmail, subject=subject, text=text, html=html).message(), LeanMimeMessage)
    for name in ("Subject", "From", "To", "Reply-To", "Message-ID", *HEADERS):
        # Django's generator folds an encoded Subject onto a new line (a leading space once read).
        assert str(lean[name]).strip() == str(django[name]).strip(), name
    assert lean.get_content_type() == "multipart/alternative"
    for kind in ("plain", "html"):
        assert lean.get_body((kind,)).get_content() == django.get_body((kind,)).get_content()
    assert lean["Date"]


def test_lines_longer_than_smtp_allows_are_quoted_printable() -> None:
    raw = (
        _pair(LeanEmail, subject="s", text="short\n", html="<td>" + "y" * 2000 + "</td>")
        .message()
        .as_bytes(linesep="\r\n")
    )
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert b"Content-Transfer-Encoding: quoted-printable" in raw
    assert b"Content-Transfer-Encoding: 8bit" in raw  # the short text part stays readable


def test_header_injection_is_refused_as_django_refuses_it() -> None:
    for bad in ({"subject": "hi\nBcc: x@evil.example"}, {"headers": {"X-Evil": "a\r\nBcc: x@evil.example"}}):
        message = LeanEmail(
            subject=bad.get("subject", "ok"),
            body="b",
            from_email="a@example.org",
            to=["b@example.org"],
            headers=bad.get("headers"),
        )
        message.attach_alternative("<p>b</p>", "text/html")
        with pytest.raises(BadHeaderError):
            message.message()


def test_other_shapes_go_through_django() -> None:
    message = LeanEmail(subject="s", body="b", from_email="a@example.org", to=["b@example.org"])
    message.attach_alternative("<p>b</p>", "text/html")
    message.attach("report.csv", "a,b\n", "text/csv")
    assert not isinstance(message.message(), LeanMimeMessage)
    plain = LeanEmail(subject="s", body="b", from_email="a@example.org", to=["b@example.org"])
    assert not isinstance(plain.message(), LeanMimeMessage)
