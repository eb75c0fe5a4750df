"""Fixtures of the API tests: keys for the three people, and a real SMTP server."""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from rest_framework.test import APIClient

from api.models import Scope
from api.services import apikey_create


@dataclass
class Inbox:
    """Messages a real SMTP server on 127.0.0.1 received."""

    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)  # type: ignore[attr-defined]
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if address in str(m["To"])]

    @staticmethod
    def text(message: EmailMessage) -> str:
        part = message.get_body(preferencelist=("plain",))
        assert part is not None
        return part.get_content()


class EphemeralController(Controller):
    """aiosmtpd's controller on port 0: learn the bound port before it pokes the server."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def smtp(settings) -> Iterator[Inbox]:
    inbox = Inbox()
    controller = EphemeralController(inbox, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = controller.port
        settings.EMAIL_USE_TLS = False
        settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = ""
        settings.EMAIL_HOST_PASSWORD = ""
        yield inbox
    finally:
        controller.stop()


def key_client(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def alice_key(people) -> str:
    return apikey_create(
        team=people.team_a, user=people.alice, name="alice", scopes=[Scope.READ, Scope.ENROL, Scope.MANAGE]
    ).secret


@pytest.fixture
def alice_read_key(people) -> str:
    return apikey_create(team=people.team_a, user=people.alice, name="read only", scopes=[Scope.READ]).secret


@pytest.fixture
def charlie_key(people) -> str:
    return apikey_create(
        team=people.team_b, user=people.charlie, name="charlie", scopes=[Scope.READ, Scope.ENROL, Scope.MANAGE]
    ).secret


@pytest.fixture(scope="session")
def lab_issuer():
    from lab.ctlog.certgen import make_ca

    return make_ca("KeyChest API Test CA")


def pem_of(der: bytes) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def scan_result_for(server, *, address: str, der: bytes, last_seen=None):
    """A current scan result of `server` presenting `der` (as the scanner stores one)."""
    from django.utils import timezone

    from certificates.services import certificate_store_der
    from monitors.models import ScanResult

    cert = certificate_store_der(der=der, source="scan", source_ref=f"{server.host}:{server.port}")
    now = last_seen or timezone.now()
    return ScanResult.objects.create(
        team=server.team,
        server=server,
        address=address,
        current=True,
        state_digest=cert.sha256,
        leaf_sha256=cert.sha256,
        chain_sha256=[cert.sha256],
        subject=cert.subject,
        issuer=cert.issuer,
        not_before=cert.not_before,
        not_after=cert.not_after,
        tls_version="TLSv1.3",
        trusted=True,
        first_seen=now,
        last_seen=now,
    )


@dataclass
class World:
    """Team A's things, one of each kind the API serves."""

    server: object
    result: object
    finding: object
    timeline: object
    domain: object
    host: object
    event: object
    channel: object
    key: object
    certificate_sha256: str
    uploaded_sha256: str
    ct_sha256: str  # read from a CT log, names the discovered host
    agent: object = None
    ip_range: object = None
    found: object = None


def make_world(team, user, issuer, *, domain: str = "example.com") -> World:
    from django.utils import timezone

    from agents.services import agent_create
    from api.enrolment import certificate_upload
    from certificates.services import certificate_store_der
    from discovery.models import FoundService, IPRange
    from events.services import event_record
    from lab.ctlog.certgen import issue
    from monitors.models import DiscoveredHost, Finding, Server, TimelineEntry, WatchedDomain
    from notifications.services import channel_create

    now = timezone.now()
    www = f"www.{domain}"
    server = Server.objects.create(team=team, host=www, port=443, next_scan_at=now)
    leaf = issue(issuer, [www]).certificate
    result = scan_result_for(server, address="192.0.2.1", der=leaf)
    result.chain_sha256 = [result.leaf_sha256, certificate_store_issuer(issuer)]
    result.save(update_fields=["chain_sha256"])
    finding = Finding.objects.create(
        team=team,
        server=server,
        code="renewal_due",
        severity="warning",
        message="renew soon",
        address="192.0.2.1",
        first_seen=now,
        last_seen=now,
    )
    timeline = TimelineEntry.objects.create(
        team=team, server=server, address="192.0.2.1", kind="certificate_changed", summary="new certificate", at=now
    )
    watched = WatchedDomain.objects.create(team=team, domain=domain, added_by=user)
    # The discovered host comes from a certificate read from a CT log.
    logged = certificate_store_der(der=issue(issuer, [f"api.{domain}"]).certificate, source="ct", source_ref="log:1")
    host = DiscoveredHost.objects.create(
        team=team, watched_domain=watched, name=f"api.{domain}", first_seen_at=now, last_seen_at=now
    )
    event = event_record(team=team, kind="certificate_expiring", subject=f"{www}:443", dedup_key=f"world-{team.pk}")
    channel = channel_create(team=team, kind="webhook", name="hook", url="https://hooks.example.com/x")
    key = apikey_create(team=team, user=user, name="world key", scopes=["read"]).api_key
    uploaded = certificate_upload(team=team, der=issue(issuer, [f"upload.{domain}"]).certificate, user=user).certificate
    agent, _token = agent_create(team=team, name="world agent")
    ip_range = IPRange.objects.create(team=team, cidr="192.0.2.0/28", ports=[443], next_sweep_at=now)
    found = FoundService.objects.create(
        team=team, ip_range=ip_range, address="192.0.2.5", port=443, names=[www], first_seen=now, last_seen=now
    )
    return World(
        server,
        result,
        finding,
        timeline,
        watched,
        host,
        event,
        channel,
        key,
        result.leaf_sha256,
        uploaded.sha256,
        logged.sha256,
        agent,
        ip_range,
        found,
    )


def certificate_store_issuer(issuer) -> str:
    from certificates.services import certificate_store_der

    return certificate_store_der(der=issuer.der, source="scan", source_ref="chain").sha256


@pytest.fixture
def world(people, lab_issuer) -> World:
    return make_world(people.team_a, people.alice, lab_issuer)


# The scanner's lab fixtures (lab, lab_dns, lab_settings, lab_name) come from tests/conftest.py.
