"""Which addresses the fetcher connects to: every address a host resolves to is checked."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from facetrail.errors import FetchError
from facetrail.sources.addresses import refusal, resolve


@pytest.mark.parametrize("address,kind", [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("10.1.2.3", "private"), ("192.168.0.10", "private"), ("fd00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"), ("0.0.0.0", "unspecified"), ("100.64.0.1", "not globally routable"),
    ("93.184.215.14", None), ("2606:4700::1111", None),
])
def test_non_public_addresses_are_refused(address: str, kind: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == kind


def answers(*addresses: str) -> Any:
    def resolver(_host: str, port: int, **_kwargs: object) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addresses]
    return resolver


def test_one_private_address_among_public_ones_refuses_the_host() -> None:
    assert resolve("club.example", 443, resolver=answers("93.184.215.14")) == ["93.184.215.14"]
    with pytest.raises(FetchError, match=r"club.example resolves to 10.0.0.7 \(private\)"):
        resolve("club.example", 443, resolver=answers("93.184.215.14", "10.0.0.7"))


def test_an_allowed_network_is_fetched_from_and_no_other() -> None:
    intranet = [ipaddress.ip_network("10.0.0.0/8")]
    assert resolve("archive.internal", 80, allowed=intranet, resolver=answers("10.0.0.7")) == ["10.0.0.7"]
    with pytest.raises(FetchError, match="loopback"):
        resolve("archive.internal", 80, allowed=intranet, resolver=answers("10.0.0.7", "127.0.0.1"))


def test_a_name_that_does_not_resolve_is_a_clear_error() -> None:
    def failing(*_args: object, **_kwargs: object) -> list[tuple[Any, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    with pytest.raises(FetchError, match="cannot resolve nowhere.invalid"):
        resolve("nowhere.invalid", 80, resolver=failing)
