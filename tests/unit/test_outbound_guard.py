"""The outbound-URL guard's address rules: every non-public form is refused, public ones pass."""

from __future__ import annotations

import ipaddress
import re

import pytest

from creditbook.adapters.net.guard import OutboundGuard, literal_address, unsafe_reason
from creditbook.domain.errors import InvalidInput, UnsafeUrl


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("0.0.0.0", "the unspecified address"),
        ("::", "the unspecified address"),
        ("127.0.0.1", "a loopback address"),
        ("127.255.0.9", "a loopback address"),
        ("::1", "a loopback address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("10.0.0.1", "a private address"),
        ("172.31.255.255", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fc00::1", "a private address"),
        ("192.0.2.10", "a private address"),  # documentation
        ("240.0.0.1", "a private address"),  # reserved for future use
        ("fec0::1", "a site-local address"),
        ("100.64.0.1", "an address that is not publicly routable"),  # carrier-grade NAT
        ("::ffff:127.0.0.1", "an IPv4-mapped form of 127.0.0.1, a loopback address"),
        ("::ffff:10.1.2.3", "an IPv4-mapped form of 10.1.2.3, a private address"),
        ("::7f00:1", "an IPv4-compatible form of 127.0.0.1, a loopback address"),
        ("64:ff9b::a9fe:a9fe", "a NAT64 form of 169.254.169.254, a link-local address"),
        ("2002:7f00:1::", "a 6to4 form of 127.0.0.1, a loopback address"),
        ("2001::1", "a private address"),  # Teredo
    ],
)
def test_a_non_public_address_is_refused_with_its_reason(address: str, reason: str) -> None:
    assert unsafe_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_a_public_address_passes(address: str) -> None:
    assert unsafe_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("127.0.0.1.", "127.0.0.1"),
    ],
)
def test_every_spelling_the_resolver_reads_as_an_address_is_read_as_that_address(
    host: str, address: str
) -> None:
    assert literal_address(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["hooks.acme.com", "1e100.net", "localhost", "xn--nxasmq6b.com"])
def test_a_name_is_not_an_address(host: str) -> None:
    assert literal_address(host) is None


def test_a_saved_url_is_checked_without_dns_when_it_spells_an_address() -> None:
    def no_dns(host: str, port: int) -> list[str]:
        raise AssertionError("an address needs no lookup")

    guard = OutboundGuard(require_https=False, resolve=no_dns)
    with pytest.raises(UnsafeUrl, match=re.escape("0x7f.1 is 127.0.0.1, a loopback address")):
        guard.check_url("http://0x7f.1/")
    assert guard.check_url("http://8.8.8.8/hook") == "http://8.8.8.8/hook"


def test_a_name_that_does_not_resolve_yet_is_accepted_when_saved_and_checked_when_sent() -> None:
    def nowhere(host: str, port: int) -> list[str]:
        raise OSError("no such name")

    guard = OutboundGuard(require_https=False, resolve=nowhere)
    assert guard.check_url("http://hooks.later.example/") == "http://hooks.later.example/"
    with pytest.raises(OSError):
        guard.checked_addresses("hooks.later.example", 80)


def test_send_time_checks_every_answer_of_the_lookup() -> None:
    guard = OutboundGuard(resolve=lambda host, port: ["93.184.216.34", "127.0.0.1"])
    with pytest.raises(UnsafeUrl, match=re.escape("resolves to 127.0.0.1, a loopback address")):
        guard.checked_addresses("mixed.example", 443)
    lenient = OutboundGuard(allow_private=True, resolve=lambda host, port: ["127.0.0.1"])
    assert lenient.checked_addresses("mixed.example", 443) == ["127.0.0.1"]


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example/",
        "hooks.example/x",
        "http:///x",
        "https://" + "a" * 2000,
        "http://a b/",
    ],
)
def test_a_url_that_is_not_absolute_http_is_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInput, match="must be an absolute http or https URL"):
        OutboundGuard(require_https=False).check_url(url)


def test_https_is_required_unless_the_guard_allows_plain_http() -> None:
    with pytest.raises(UnsafeUrl, match="must use https"):
        OutboundGuard(resolve=lambda host, port: ["93.184.216.34"]).check_url("http://a.example/")
