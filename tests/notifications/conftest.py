"""Real parts for notification tests: an SMTP server (aiosmtpd) and an HTTP webhook receiver,
both on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

import email
import email.policy
import json
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller


class _Handler:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.fail = False
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.fail:
            return "451 4.3.0 Try again later"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


class EphemeralController(Controller):
    """aiosmtpd's Controller on port 0: learn the real port before the readiness probe."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class Smtp:
    handler: _Handler
    port: int

    @property
    def messages(self) -> list[EmailMessage]:
        return self.handler.messages

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m["To"])]

    @staticmethod
    def text(message: EmailMessage) -> str:
        return message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]

    @staticmethod
    def html(message: EmailMessage) -> str:
        return message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]


@pytest.fixture
def people(people: Any) -> Any:
    """The shared three people, minus the "email every member" channel each of their teams starts
    with: these tests build exactly the channels they reason about (test_default_channel.py
    covers the default one)."""
    from notifications.models import Channel

    Channel.objects.all().delete()
    return people


@pytest.fixture
def smtp(settings: Any) -> Smtp:
    handler = _Handler()
    controller = EphemeralController(handler, hostname="127.0.0.1", port=0)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = controller.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5
    yield Smtp(handler=handler, port=controller.port)
    controller.stop()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def webhook(settings: Any) -> WebhookReceiver:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True
    receiver = WebhookReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(receiver.status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/keychest"
    yield receiver
    server.shutdown()
    server.server_close()


def outside_address_confirmed(team: Any, email: str) -> None:
    """An outside address whose holder already confirmed it (security finding 7: until then it
    gets nothing), so a test can reason about alerts alone."""
    from django.utils import timezone

    from notifications.models import RecipientConfirmation

    RecipientConfirmation.objects.create(team=team, email=email.lower(), confirmed_at=timezone.now())
