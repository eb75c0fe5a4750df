"""/api/v1/servers: CRUD, bulk, pause/resume, scan now, results, findings, timeline."""

from __future__ import annotations

import pytest

from monitors.models import Server

pytestmark = pytest.mark.django_db


def test_list_and_detail(alice_client, world) -> None:
    listing = alice_client.get("/api/v1/servers/").json()
    assert [s["host"] for s in listing["results"]] == ["www.example.com"]
    assert listing["results"][0]["open_findings"] == 1
    detail = alice_client.get(f"/api/v1/servers/{world.server.uuid}/").json()
    assert detail["id"] == str(world.server.uuid) and detail["label"] == "www.example.com:443"


def test_create_update_and_remove(alice_client, people) -> None:
    created = alice_client.post(
        "/api/v1/servers/", {"host": "mail.example.com", "port": 587, "tags": ["mail"]}, content_type="application/json"
    )
    assert created.status_code == 201
    body = created.json()
    assert body["protocol"] == "smtp" and body["tags"] == ["mail"]
    again = alice_client.post("/api/v1/servers/", {"host": "mail.example.com:587"}, content_type="application/json")
    assert again.status_code == 409 and again.json()["error"] == "already-watched"
    patched = alice_client.patch(
        f"/api/v1/servers/{body['id']}/", {"scan_interval": 3600}, content_type="application/json"
    )
    assert patched.json()["scan_interval"] == 3600
    assert alice_client.delete(f"/api/v1/servers/{body['id']}/").status_code == 204
    assert Server.objects.get(uuid=body["id"]).removed_at is not None
    assert alice_client.get(f"/api/v1/servers/{body['id']}/").status_code == 404


def test_invalid_input_has_the_consistent_error_body(alice_client, people) -> None:
    response = alice_client.post("/api/v1/servers/", {"host": "bad host!"}, content_type="application/json")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid" and "host" in body["fields"]


def test_bulk_add_reports_per_line(alice_client, people) -> None:
    text = "a.example.com\nb.example.com:8443\n# comment\nnot a host!\na.example.com\n"
    body = alice_client.post("/api/v1/servers/bulk/", {"text": text}, content_type="application/json").json()
    assert [s["label"] for s in body["created"]] == ["a.example.com:443", "b.example.com:8443"]
    assert [s["label"] for s in body["existing"]] == ["a.example.com:443"]
    assert body["errors"][0]["line_number"] == 4


def test_pause_resume_and_scan_now(alice_client, world) -> None:
    url = f"/api/v1/servers/{world.server.uuid}"
    assert alice_client.post(f"{url}/pause/").json()["paused"] is True
    assert alice_client.post(f"{url}/scan/").status_code == 400
    assert alice_client.post(f"{url}/resume/").json()["paused"] is False
    assert alice_client.post(f"{url}/scan/").status_code == 202


def test_results_findings_and_timeline(alice_client, world) -> None:
    url = f"/api/v1/servers/{world.server.uuid}"
    [result] = alice_client.get(f"{url}/results/").json()
    assert result["address"] == "192.0.2.1" and result["leaf_sha256"] == world.certificate_sha256
    [finding] = alice_client.get(f"{url}/findings/").json()
    assert finding["code"] == "renewal_due"
    [entry] = alice_client.get(f"{url}/timeline/").json()
    assert entry["kind"] == "certificate_changed"


def test_cursor_pagination_walks_every_server_once(alice_client, people) -> None:
    for i in range(7):
        Server.objects.create(team=people.team_a, host=f"h{i}.example.com", port=443)
    seen = []
    url = "/api/v1/servers/?page_size=3"
    while url:
        page = alice_client.get(url).json()
        seen += [s["host"] for s in page["results"]]
        url = page["next"]
    assert sorted(seen) == [f"h{i}.example.com" for i in range(7)]


def test_filters_and_ordering(alice_client, people) -> None:
    Server.objects.create(team=people.team_a, host="b.example.com", port=443, paused=True)
    Server.objects.create(team=people.team_a, host="a.example.org", port=443)
    assert [s["host"] for s in alice_client.get("/api/v1/servers/?paused=true").json()["results"]] == ["b.example.com"]
    assert [s["host"] for s in alice_client.get("/api/v1/servers/?host=example.org").json()["results"]] == [
        "a.example.org"
    ]
    ordered = alice_client.get("/api/v1/servers/?ordering=host").json()["results"]
    assert [s["host"] for s in ordered] == ["a.example.org", "b.example.com"]


def test_list_queries_stay_constant(alice_client, people, django_assert_max_num_queries) -> None:
    for i in range(30):
        Server.objects.create(team=people.team_a, host=f"h{i}.example.com", port=443)
    with django_assert_max_num_queries(8):
        assert len(alice_client.get("/api/v1/servers/").json()["results"]) == 30


def test_charlie_gets_404_on_team_a_servers(charlie_client, world) -> None:
    url = f"/api/v1/servers/{world.server.uuid}"
    assert charlie_client.get(f"{url}/").status_code == 404
    assert charlie_client.delete(f"{url}/").status_code == 404
    assert charlie_client.get("/api/v1/servers/").json()["results"] == []


def test_session_writes_need_the_csrf_token(people, world) -> None:
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(people.alice)
    response = client.post("/api/v1/servers/", {"host": "x.example.com"}, content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert client.get("/api/v1/servers/").status_code == 200
