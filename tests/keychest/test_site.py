from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_every_page_carries_a_strict_content_security_policy() -> None:
    response = Client().get("/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp


@pytest.mark.django_db
def test_healthz_reports_the_database() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy() -> None:
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={
            "DEBUG": "0",
            "SECRET_KEY": "x" * 20 + "production-like-secret-key-with-enough-entropy-1234567890",
            "ALLOWED_HOSTS": "keychest.example.com",
            "SITE_URL": "https://keychest.example.com",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_missing_secret_key_is_refused_in_production() -> None:
    result = _manage("check", env={"DEBUG": "0", "SECRET_KEY": ""})
    assert result.returncode != 0
    assert "SECRET_KEY is required" in result.stderr


def test_a_bad_boolean_fails_loudly() -> None:
    result = _manage("check", env={"DEBUG": "1", "KEYCHEST_ALLOW_PRIVATE_TARGETS": "perhaps"})
    assert result.returncode != 0
    assert "KEYCHEST_ALLOW_PRIVATE_TARGETS" in result.stderr


def test_compose_file_names_every_service_with_command_and_environment() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "ct", "mailpit"} <= set(services)
    for name in ("web", "worker", "beat", "ct"):
        service = services[name]
        assert service.get("command"), name
        env = service.get("environment") or {}
        for key in ("DATABASE_URL", "REDIS_URL", "EMAIL_URL", "SECRET_KEY"):
            assert key in env, (name, key)
        assert "build" in service or "image" in service
    for name in ("postgres", "redis", "web"):
        assert "healthcheck" in services[name], name
    assert (ROOT / "Dockerfile").exists()
    for volume in compose.get("volumes", {}):
        assert any(str(v).startswith(f"{volume}:") for s in services.values() for v in s.get("volumes", [])), (
            f"volume {volume} is declared but unused"
        )


def test_make_run_starts_the_processes_compose_runs() -> None:
    """`make run` (scripts/run_all.py) and docker-compose.yml run the same application processes:
    web, worker, beat and the CT follower."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_all", ROOT / "scripts" / "run_all.py")
    assert spec is not None and spec.loader is not None
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    layout = run_all.processes("127.0.0.1:8000")
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    app_services = {name for name, s in services.items() if "build" in s and name != "migrate"}
    assert set(layout) == app_services == {"web", "worker", "beat", "ct"}
    assert layout["ct"][1:4] == ["manage.py", "ct_ingest", "--follow"]
    assert services["ct"]["command"][1:4] == ["manage.py", "ct_ingest", "--follow"]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_production_web_server_keeps_connections_alive_with_threads() -> None:
    """gunicorn.conf.py (what the Dockerfile and compose file run) starts threaded workers that
    answer several requests on one kept-alive connection, as API scripts make them."""
    import http.client
    import time

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update({"DEBUG": "1", "WEB_CONCURRENCY": "1", "GUNICORN_CMD_ARGS": "--threads 2"})
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    server = subprocess.Popen(
        [gunicorn, "keychest.wsgi:application", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.connect()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError("gunicorn did not start") from None
                time.sleep(0.2)
        sock = conn.sock
        for _ in range(3):
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            assert response.status == 200, response.read()
            assert response.getheader("Connection", "").lower() != "close"
            response.read()
        assert conn.sock is sock  # the same connection served all three
        conn.close()
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "Using worker: gthread" in output, output
