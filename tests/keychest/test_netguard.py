"""Address safety: literal, encoded and DNS-rebinding forms of non-public targets are refused."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import pytest

from kcproto import netguard
from lab.dns import LabDNS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0X7F.0x0.0.0x1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("10.1", "10.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::1]", "::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("[fe80::1%25eth0]", "fe80::1"),
        ("::ffff:127.0.0.1", "::ffff:127.0.0.1"),
    ],
)
def test_it_reads_every_spelling_of_an_address(text: str, expected: str) -> None:
    assert netguard.parse_ip_literal(text) == ipaddress.ip_address(expected)


@pytest.mark.parametrize("text", ["example.com", "1.2.3.4.5", "256.0.0.1", "09.1.1.1", "a.b", "", "1..2"])
def test_it_does_not_take_names_or_bad_forms_for_addresses(text: str) -> None:
    assert netguard.parse_ip_literal(text) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.1.1", "link_local"),
        ("169.254.169.254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("100.64.0.1", "cgnat"),
        ("100.127.255.254", "cgnat"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.10", "documentation"),
        ("198.51.100.1", "documentation"),
        ("203.0.113.9", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.0.8", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link_local"),
        ("fc00::1", "unique_local"),
        ("fd12:3456::1", "unique_local"),
        ("fd00:ec2::254", "metadata"),
        ("ff02::1", "multicast"),
        ("fec0::1", "site_local"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("2001:2::1", "benchmarking"),
        ("100::1", "reserved"),
        ("4000::1", "reserved"),
        ("::ffff:127.0.0.1", "embedded_loopback"),
        ("::ffff:169.254.169.254", "embedded_metadata"),
        ("::ffff:10.0.0.1", "embedded_private"),
        ("::127.0.0.1", "embedded_loopback"),
        ("64:ff9b::127.0.0.1", "embedded_loopback"),
        ("64:ff9b::a9fe:a9fe", "embedded_metadata"),
        ("64:ff9b::10.1.2.3", "embedded_private"),
        ("64:ff9b:1::5db8:d822", "nat64_local"),
        ("2002:7f00:1::1", "embedded_loopback"),
        ("2002:a9fe:a9fe::", "embedded_metadata"),
        ("2002:c0a8:0101::1", "embedded_private"),
        # Teredo: server 65.54.227.120, client obfuscated 127.0.0.1 (~ 0x80fffffe)
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "embedded_loopback"),
        ("2001:0:a00:1::1", "embedded_private"),
    ],
)
def test_it_refuses_non_public_addresses_with_a_reason(address: str, reason: str) -> None:
    assert netguard.classify(address) == reason
    assert not netguard.is_public(address)
    with pytest.raises(netguard.TargetRefused) as caught:
        netguard.check_address(address, allow_private=False)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "1.1.1.1",
        "8.8.8.8",
        "172.15.255.255",
        "172.32.0.1",
        "100.63.255.255",
        "100.128.0.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:93.184.216.34",
        "64:ff9b::93.184.216.34",
        "2002:5db8:d822::1",
        "2001:0:4136:e378:8000:63bf:a247:27dd",  # Teredo with public server and client
    ],
)
def test_it_accepts_public_addresses(address: str) -> None:
    assert netguard.classify(address) is None
    assert netguard.check_address(address, allow_private=False) == netguard.parse_ip_literal(address)


@pytest.mark.parametrize(
    "text", ["2130706433", "0x7f.1", "0177.0.0.1", "[::1]", "::ffff:7f00:1", "localhost", "a.localhost"]
)
def test_it_refuses_encoded_loopback_names_without_asking_dns(text: str) -> None:
    result = netguard.resolve(text, allow_private=False, nameservers=[("127.0.0.1", 9)])
    assert result.addresses == []
    assert result.refused and all("loopback" in reason for _, reason in result.refused)


def test_private_targets_are_allowed_only_when_the_flag_is_on() -> None:
    assert netguard.check_address("127.0.0.1", allow_private=True) == ipaddress.ip_address("127.0.0.1")
    result = netguard.resolve("0x7f.1", allow_private=True)
    assert result.addresses == [ipaddress.ip_address("127.0.0.1")]


def test_it_returns_only_the_checked_addresses_of_a_name() -> None:
    with LabDNS({"mixed.lab": ["93.184.216.34", "127.0.0.1", "10.0.0.5", "2606:4700::1", "fe80::1"]}) as dns:
        result = netguard.resolve(
            "mixed.lab", allow_private=False, nameservers=netguard.parse_nameservers(dns.nameserver)
        )
    assert [str(a) for a in result.addresses] == ["93.184.216.34", "2606:4700::1"]
    assert sorted(result.refused) == [("10.0.0.5", "private"), ("127.0.0.1", "loopback"), ("fe80::1", "link_local")]


def test_a_rebinding_name_is_resolved_once_and_its_later_answer_is_never_used() -> None:
    def rebinding(name: str, rdtype: str, count: int) -> list[str]:
        return ["93.184.216.34"] if count == 1 else ["127.0.0.1"]

    with LabDNS() as dns:
        dns.set("rebind.lab", rebinding)
        servers = netguard.parse_nameservers(dns.nameserver)
        first = netguard.resolve("rebind.lab", allow_private=False, nameservers=servers)
        assert dns.queries[("rebind.lab", "A")] == 1
        assert [str(a) for a in first.addresses] == ["93.184.216.34"]
        # The second answer (now loopback) is refused, however the name is looked up.
        second = netguard.resolve("rebind.lab", allow_private=False, nameservers=servers)
        third = asyncio.run(netguard.resolve_async("rebind.lab", allow_private=False, nameservers=servers))
    assert second.addresses == [] and second.refused == [("127.0.0.1", "loopback")]
    assert third.addresses == [] and third.refused == [("127.0.0.1", "loopback")]


def test_resolution_failures_are_reported_not_raised() -> None:
    with LabDNS({"broken.lab": "SERVFAIL"}) as dns:
        servers = netguard.parse_nameservers(dns.nameserver)
        assert netguard.resolve("nothing.lab", allow_private=False, nameservers=servers).error == "nxdomain"
        assert netguard.resolve("broken.lab", allow_private=False, nameservers=servers).error == "servfail"


def test_a_silent_name_server_is_bounded_by_the_time_budget() -> None:
    import time

    with LabDNS({"slow.lab": "TIMEOUT"}) as dns:
        servers = netguard.parse_nameservers(dns.nameserver)
        start = time.monotonic()
        result = netguard.resolve("slow.lab", allow_private=False, timeout=0.6, nameservers=servers)
        elapsed = time.monotonic() - start
    assert result.error == "timeout"
    assert elapsed < 2.0


def test_it_parses_name_server_lists() -> None:
    assert netguard.parse_nameservers("127.0.0.1:5353, 1.1.1.1,[::1]:53") == [
        ("127.0.0.1", 5353),
        ("1.1.1.1", 53),
        ("::1", 53),
    ]
    with pytest.raises(ValueError):
        netguard.parse_nameservers("dns.example.com")


def _listener() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def test_connect_refuses_a_private_address_before_any_traffic() -> None:
    server = _listener()
    server.settimeout(0.2)
    try:
        with pytest.raises(netguard.TargetRefused):
            netguard.connect("127.0.0.1", server.getsockname()[1], timeout=1, allow_private=False)
        with pytest.raises(socket.timeout):
            server.accept()  # nothing ever connected
    finally:
        server.close()


def test_connect_reaches_exactly_the_checked_address_when_allowed() -> None:
    server = _listener()
    try:
        sock = netguard.connect("0x7f.1", server.getsockname()[1], timeout=1, allow_private=True)
        assert sock.getpeername() == server.getsockname()
        sock.close()

        async def go() -> tuple[str, int]:
            _reader, writer = await netguard.open_connection(
                "127.0.0.1", server.getsockname()[1], timeout=1, allow_private=True
            )
            peer = writer.get_extra_info("peername")
            writer.close()
            raw = await netguard.connect_socket_async(
                "127.0.0.1", server.getsockname()[1], timeout=1, allow_private=True
            )
            raw.close()
            return peer

        assert asyncio.run(go())[0] == "127.0.0.1"
    finally:
        server.close()


def test_async_connect_refuses_private_addresses() -> None:
    async def go() -> None:
        await netguard.open_connection("169.254.169.254", 80, timeout=1, allow_private=False)

    with pytest.raises(netguard.TargetRefused) as caught:
        asyncio.run(go())
    assert caught.value.reason == "metadata"
