"""The certbot and acme.sh hooks in contrib/, run with sh and curl against a live server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from api.models import ApiKey, PendingEnrolment, UploadedCertificate
from lab.ctlog.certgen import issue
from monitors.models import Server
from tests.api.conftest import pem_of

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
pytestmark = pytest.mark.django_db(transaction=True)


def _lineage(tmp_path: Path, issuer, names: list[str]) -> Path:
    live = tmp_path / "live" / names[0]
    live.mkdir(parents=True)
    (live / "cert.pem").write_text(pem_of(issue(issuer, names).certificate))
    return live


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": env.get("HOME", "/tmp")}
    return subprocess.run(args, env={**base, **env}, capture_output=True, text=True, timeout=60, check=False)


def test_the_certbot_hook_enrols_the_renewed_certificate_and_hosts(live_server, people, lab_issuer, tmp_path) -> None:
    from api.services import apikey_create

    secret = apikey_create(team=people.team_a, user=people.alice, scopes=["read", "enrol"]).secret
    live = _lineage(tmp_path, lab_issuer, ["www.example.com", "example.com"])
    result = _run(
        ["sh", str(CONTRIB / "keychest-certbot-deploy-hook.sh")],
        {
            "KEYCHEST_URL": live_server.url,
            "KEYCHEST_API_KEY": secret,
            "KEYCHEST_CONF": str(tmp_path / "none.conf"),
            "RENEWED_LINEAGE": str(live),
            "RENEWED_DOMAINS": "www.example.com example.com *.example.com",
        },
    )
    assert result.returncode == 0, result.stderr
    assert sorted(Server.objects.for_team(people.team_a).values_list("host", flat=True)) == [
        "example.com",
        "www.example.com",
    ]
    assert UploadedCertificate.objects.for_team(people.team_a).count() == 1
    # Running again (the next renewal of the same certificate) changes nothing.
    again = _run(
        ["sh", str(CONTRIB / "keychest-certbot-deploy-hook.sh")],
        {
            "KEYCHEST_URL": live_server.url,
            "KEYCHEST_API_KEY": secret,
            "KEYCHEST_CONF": str(tmp_path / "none.conf"),
            "RENEWED_LINEAGE": str(live),
            "RENEWED_DOMAINS": "www.example.com",
        },
    )
    assert Server.objects.count() == 2 and "already-inserted" in again.stderr


def test_the_certbot_hook_claims_a_key_when_none_is_set_and_saves_it(live_server, people, lab_issuer, tmp_path) -> None:
    conf = tmp_path / "keychest" / "hook.conf"
    live = _lineage(tmp_path, lab_issuer, ["web.example.net"])
    env = {
        "KEYCHEST_URL": live_server.url + "/",
        "KEYCHEST_EMAIL": "ops@example.net",
        "KEYCHEST_CONF": str(conf),
        "RENEWED_LINEAGE": str(live),
        "RENEWED_DOMAINS": "web.example.net",
    }
    result = _run(["sh", str(CONTRIB / "keychest-certbot-deploy-hook.sh")], env)
    assert result.returncode == 0, result.stderr
    assert "claimed an API key" in result.stderr
    saved = conf.read_text()
    assert saved.startswith("KEYCHEST_API_KEY=") and oct(conf.stat().st_mode & 0o777) == "0o600"
    key = ApiKey.objects.get(claim_email="ops@example.net")
    assert key.confirmed_at is None
    # Held until the address confirms: nothing is watched yet.
    assert Server.objects.count() == 0
    assert PendingEnrolment.objects.filter(api_key=key).count() == 2
    # The next renewal reuses the saved key instead of claiming another.
    env.pop("KEYCHEST_EMAIL")
    assert _run(["sh", str(CONTRIB / "keychest-certbot-deploy-hook.sh")], env).returncode == 0
    assert ApiKey.objects.filter(claim_email="ops@example.net").count() == 1


def test_the_certbot_hook_never_fails_a_renewal(tmp_path) -> None:
    result = _run(
        ["sh", str(CONTRIB / "keychest-certbot-deploy-hook.sh")],
        {"KEYCHEST_CONF": str(tmp_path / "x.conf"), "RENEWED_LINEAGE": str(tmp_path), "RENEWED_DOMAINS": "a.example"},
    )
    assert result.returncode == 0 and "set KEYCHEST_URL" in result.stderr


def test_the_acme_sh_hook_enrols_the_certificate_and_host(live_server, people, lab_issuer, tmp_path) -> None:
    from api.services import apikey_create

    secret = apikey_create(team=people.team_a, user=people.alice, scopes=["enrol"]).secret
    live = _lineage(tmp_path, lab_issuer, ["shop.example.com"])
    script = f'. "{CONTRIB / "keychest.acme.sh"}" && keychest_deploy shop.example.com key.pem "{live / "cert.pem"}" ca.pem fullchain.pem'
    result = _run(["sh", "-c", script], {"KEYCHEST_URL": live_server.url, "KEYCHEST_API_KEY": secret})
    assert result.returncode == 0, result.stderr
    assert '"status":"success"' in result.stderr
    assert Server.objects.get(host="shop.example.com").team == people.team_a
    assert UploadedCertificate.objects.for_team(people.team_a).count() == 1
