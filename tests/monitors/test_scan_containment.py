"""One broken address never costs another its result: a failure while probing, validating or
judging one address becomes a `scan_error` finding on it (logged), and the batch is stored."""

from __future__ import annotations

import logging

import pytest

from monitors import scan_pass, scan_storing, scanning
from monitors.models import Finding, ScanResult, Server
from monitors.scanning import scan_servers
from monitors.services import ca_bundle_create, server_enrol

pytestmark = pytest.mark.django_db


def _inject(monkeypatch: pytest.MonkeyPatch, step: str, bad_host: str) -> None:
    """Make KeyChest's own code raise for `bad_host` only, at one step of the real pipeline."""

    def boom() -> None:
        raise ValueError("injected failure")

    if step == "probing":
        real_probe = scanning.tlsprobe.probe

        async def probe(address: str, port: int, **kwargs):  # type: ignore[no-untyped-def]
            if kwargs["sni"] == bad_host:
                boom()
            return await real_probe(address, port, **kwargs)

        monkeypatch.setattr(scanning.tlsprobe, "probe", probe)
    elif step == "validating":
        real_validate = scan_pass.validate

        def validate(chain, host, store, **kwargs):  # type: ignore[no-untyped-def]
            if host == bad_host:
                boom()
            return real_validate(chain, host, store, **kwargs)

        monkeypatch.setattr(scan_pass, "validate", validate)
    else:
        real_checks = scan_storing.checks.address_checks

        def address_checks(probe, validation, *, host, **kwargs):  # type: ignore[no-untyped-def]
            if host == bad_host:
                boom()
            return real_checks(probe, validation, host=host, **kwargs)

        monkeypatch.setattr(scan_storing.checks, "address_checks", address_checks)


@pytest.mark.parametrize("step", ["probing", "validating", "judging"])
def test_an_exception_on_one_address_is_a_finding_and_the_batch_is_stored(
    people, lab, lab_name, lab_settings, monkeypatch, caplog, step: str
) -> None:
    bundle = ca_bundle_create(team=people.team_a, name="lab", pem=lab.root_pem)
    good_host, bad_host = lab_name("good"), lab_name("bad")
    servers = []
    for host in (good_host, bad_host):
        endpoint = lab.tls(lab.leaf([host]))
        servers.append(server_enrol(team=people.team_a, host=f"{host}:{endpoint.port}", ca_bundle=bundle))
    _inject(monkeypatch, step, bad_host)
    with caplog.at_level(logging.ERROR, logger="monitors"):
        scan_servers(list(Server.objects.filter(pk__in=[s.pk for s in servers]).select_related("ca_bundle")))
    good, bad = servers
    # The good server is stored as usual.
    result = ScanResult.objects.get(server=good, current=True)
    assert result.leaf_sha256 and result.trusted is True
    assert not Finding.objects.filter(server=good, resolved_at=None).exists()
    # The bad one has its finding, on its address, and the error is in the log.
    finding = Finding.objects.get(server=bad, resolved_at=None)
    assert (finding.code, finding.address, finding.severity) == ("scan_error", "127.0.0.1", "error")
    assert step in finding.message and "ValueError" in finding.message
    assert "injected failure" not in finding.message  # internals stay in the log
    assert any("injected failure" in r.getMessage() or r.exc_info for r in caplog.records)
    assert Server.objects.get(pk=bad.pk).last_scan_at is not None
