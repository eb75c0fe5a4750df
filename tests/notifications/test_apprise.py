"""Apprise channels: real HTTP to local ntfy, Gotify and JSON receivers, through the same
event -> delivery -> attempt rows; the SSRF guard; secrets encrypted and never logged."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone
from django.utils.html import escape
from rest_framework.test import APIClient

from events.services import event_record
from notifications.apprise_urls import InvalidAppriseUrl, apprise_url_check
from notifications.models import Channel, ChannelKind, Delivery, DeliveryAttempt, DeliveryStatus, EventKind
from notifications.services import channel_create, channel_send_test, deliveries_send_due, events_dispatch

pytestmark = pytest.mark.django_db
TOKEN = "AbcGotifyT0kenXYZ"  # a test token, looked for in logs
NTFY_TOPIC = "kc-alerts-7f3a9c"


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class Receiver:
    """One local HTTP server standing in for ntfy, Gotify and a generic JSON endpoint."""

    port: int = 0
    hits: list[Hit] = field(default_factory=list)
    status: int = 200

    def url(self, scheme: str, path: str, host: str = "127.0.0.1") -> str:
        return f"{scheme}://{host}:{self.port}/{path}"


@pytest.fixture
def receiver() -> Any:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode("utf-8", "replace")
            state.hits.append(Hit(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"id": 1}' if state.status == 200 else b'{"error": "nope"}')

        do_POST = do_PUT = _any

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _send(team, kind: str = EventKind.CERTIFICATE_EXPIRING, subject: str = "www.example.com:443") -> dict[str, int]:
    event_record(team=team, kind=kind, subject=subject, dedup_key=f"{kind}:{subject}", severity="error")
    events_dispatch()
    return deliveries_send_due(now=timezone.now() + timedelta(minutes=5))


def test_it_delivers_to_ntfy_gotify_and_a_json_endpoint_through_real_http(people, receiver, settings) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True
    for name, url in (
        ("ntfy", receiver.url("ntfy", NTFY_TOPIC)),
        ("gotify", receiver.url("gotify", TOKEN)),
        ("json", receiver.url("json", "hooks/keychest")),
    ):
        channel_create(team=people.team_a, kind=ChannelKind.APPRISE, name=name, apprise_url=url)

    assert _send(people.team_a) == {"sent": 3}

    ntfy = [h for h in receiver.hits if NTFY_TOPIC in h.body or NTFY_TOPIC in h.path]
    gotify = [h for h in receiver.hits if h.path.startswith("/message")]
    generic = [h for h in receiver.hits if h.path == "/hooks/keychest"]
    assert len(ntfy) == len(gotify) == len(generic) == 1
    assert TOKEN in gotify[0].headers.get("x-gotify-key", "") + gotify[0].path
    for hit in ntfy + gotify + generic:
        assert "www.example.com:443" in hit.body and "Certificate expiring" in hit.body
    assert DeliveryAttempt.objects.filter(ok=True).count() == 3


def test_per_kind_filters_rate_limits_retries_and_the_test_button_apply(people, receiver, settings) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True
    channel = channel_create(
        team=people.team_a,
        kind=ChannelKind.APPRISE,
        name="ops",
        apprise_url=receiver.url("json", "hook"),
        event_kinds=[EventKind.SERVER_DOWN],
    )
    assert _send(people.team_a, EventKind.CERTIFICATE_ISSUED) == {}  # not a kind it carries
    assert receiver.hits == []
    receiver.status = 503
    assert _send(people.team_a, EventKind.SERVER_DOWN) == {"retry": 1}
    delivery = Delivery.objects.get(channel=channel)
    assert delivery.status == DeliveryStatus.PENDING and "503" in delivery.last_error
    receiver.status = 200
    assert deliveries_send_due(now=delivery.send_after + timedelta(seconds=1)) == {"sent": 1}
    test = channel_send_test(channel=channel)
    assert deliveries_send_due(now=timezone.now() + timedelta(seconds=1)) == {"sent": 1}
    test.refresh_from_db()
    assert test.status == DeliveryStatus.SENT and "KeyChest can reach this channel" in receiver.hits[-1].body


def test_a_name_resolving_to_a_private_address_is_refused_and_disables_the_channel(
    people, receiver, lab_dns, lab_name, settings, smtp
) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False
    settings.KEYCHEST_DNS_NAMESERVERS = [lab_dns.nameserver]
    inside = lab_name("inside", "127.0.0.1")
    literal = channel_create(
        team=people.team_a, kind=ChannelKind.APPRISE, name="lit", apprise_url=receiver.url("json", "x")
    )
    named = channel_create(
        team=people.team_a, kind=ChannelKind.APPRISE, name="named", apprise_url=receiver.url("json", "x", host=inside)
    )

    assert _send(people.team_a) == {"failed": 2}

    assert receiver.hits == []
    for channel in (literal, named):
        channel.refresh_from_db()
        attempt = DeliveryAttempt.objects.get(delivery__channel=channel)
        assert attempt.permanent and "non-public address" in attempt.error
        assert not channel.enabled
    assert "127.0.0.1" in DeliveryAttempt.objects.get(delivery__channel=named).error


def test_a_rebinding_name_is_resolved_once_and_its_private_second_answer_never_used(
    people, receiver, lab_dns, lab_name, settings
) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False
    settings.KEYCHEST_DNS_NAMESERVERS = [lab_dns.nameserver]
    settings.KEYCHEST_WEBHOOK_TIMEOUT = 2
    name = lab_name("rebind")
    # First answer public (nothing listens there for us), every later answer the local receiver.
    lab_dns.set(
        name, lambda _name, rdtype, count: (["192.88.98.1"] if count == 1 else ["127.0.0.1"]) if rdtype == "A" else []
    )
    channel_create(
        team=people.team_a, kind=ChannelKind.APPRISE, name="r", apprise_url=receiver.url("json", "x", host=name)
    )

    outcome = _send(people.team_a)

    assert outcome in ({"retry": 1}, {"failed": 1})  # the public address did not answer
    assert receiver.hits == []
    assert lab_dns.queries[(name, "A")] == 1  # resolved once; requests never asked again
    assert "127.0.0.1" not in DeliveryAttempt.objects.get().error


def test_the_url_is_stored_encrypted_shown_shortened_and_never_logged(
    people, receiver, settings, caplog, alice_client
) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True
    url = receiver.url("gotify", TOKEN)
    channel = channel_create(team=people.team_a, kind=ChannelKind.APPRISE, name="g", apprise_url=url)
    raw = Channel.objects.filter(pk=channel.pk).values_list("apprise_url_sealed", "apprise_url_masked", "url").get()
    assert all(TOKEN not in column for column in raw) and channel.apprise_url() == url
    receiver.status = 401  # Apprise logs the failure, with the URL it posted to
    for logger in ("apprise", "urllib3", "requests", ""):
        logging.getLogger(logger).setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)

    _send(people.team_a)
    receiver.status = 200
    channel_send_test(channel=channel)
    deliveries_send_due(now=timezone.now() + timedelta(days=2))

    assert receiver.hits and any(TOKEN in h.headers.get("x-gotify-key", "") + h.path for h in receiver.hits)
    assert any(r.name.startswith("apprise") for r in caplog.records)  # Apprise did log
    for record in caplog.records:
        assert TOKEN not in record.getMessage() and TOKEN not in (record.exc_text or "")
    assert all(TOKEN not in a.error for a in DeliveryAttempt.objects.all())
    assert all(TOKEN not in d.last_error for d in Delivery.objects.all())
    page = alice_client.get(f"/notifications/channels/{channel.uuid}/").content.decode()
    assert escape(channel.apprise_url_masked) in page and TOKEN not in page
    api = APIClient()
    api.force_login(people.alice)
    listing = api.get("/api/v1/channels/").content.decode()
    assert "gotify://" in listing and TOKEN not in listing


def test_only_urls_of_network_services_apprise_knows_are_accepted(people) -> None:
    for bad in ("", "not a url", "foo://bar", "dbus://", "windows://"):
        with pytest.raises(InvalidAppriseUrl):
            apprise_url_check(bad)
    assert apprise_url_check("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-1001234567").startswith("tgram://")
    api = APIClient()
    api.force_login(people.alice)
    refused = api.post("/api/v1/channels/", {"kind": "apprise", "name": "x", "apprise_url": "foo://bar"}, format="json")
    assert refused.status_code == 400 and "apprise_url" in refused.json()["fields"]
    made = api.post(
        "/api/v1/channels/",
        {"kind": "apprise", "name": "ntfy", "apprise_url": f"ntfys://ntfy.sh/{NTFY_TOPIC}"},
        format="json",
    )
    assert made.status_code == 201 and made.json()["apprise_url"].startswith("ntfys://")
    assert Channel.objects.get(name="ntfy").apprise_url() == f"ntfys://ntfy.sh/{NTFY_TOPIC}"


def test_an_admin_adds_an_apprise_channel_on_the_channels_page(people, alice_client) -> None:
    page = "/notifications/channels/"
    form = {"kind": "apprise", "name": "phone", "rate_limit_per_hour": 20, "grouping_seconds": 60}
    refused = alice_client.post(page, {**form, "apprise_url": "foo://bar"})
    assert refused.status_code == 200 and "Apprise does not know" in refused.content.decode()
    assert not Channel.objects.exists()
    added = alice_client.post(page, {**form, "apprise_url": f"ntfys://ntfy.sh/{NTFY_TOPIC}"}, follow=True)
    channel = Channel.objects.get(name="phone")
    assert channel.kind == ChannelKind.APPRISE and channel.apprise_url() == f"ntfys://ntfy.sh/{NTFY_TOPIC}"
    assert escape(channel.apprise_url_masked) in added.content.decode()
