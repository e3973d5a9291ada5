"""Which network addresses the URL fetcher may connect to.

A host is resolved once per request and every address it resolves to is checked: one private address among
public ones refuses the host (a DNS answer is the attacker's to choose). The fetcher then connects to an address
checked here, never to the name again, so a second, different DNS answer (rebinding) cannot slip in between the
check and the connection.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any

from facetrail.errors import FetchError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., list[tuple[Any, ...]]]
"""socket.getaddrinfo's signature; injected in tests of the checks."""

ALLOW_SETTING = "FACETRAIL_FETCH_ALLOW_NETWORKS"


def refusal(address: IPAddress) -> str | None:
    """Why connecting to `address` is refused by default (a kind of non-public address), or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refusal(address.ipv4_mapped)
    # The most specific kind first: a link-local or reserved address is also "private" to ipaddress.
    kinds = (("loopback", address.is_loopback), ("link-local", address.is_link_local),
             ("multicast", address.is_multicast), ("unspecified", address.is_unspecified),
             ("reserved", address.is_reserved), ("private", address.is_private))
    for kind, applies in kinds:
        if applies:
            return kind
    return None if address.is_global else "not globally routable"


def resolve(host: str, port: int, *, allowed: Sequence[IPNetwork] = (),
            resolver: Resolver = socket.getaddrinfo) -> list[str]:
    """The addresses to connect to for host:port, every one of them checked; raise FetchError when the host does
    not resolve, or resolves to any refused address outside the `allowed` networks (the operator's choice)."""
    try:
        answers = resolver(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"cannot resolve {host}: {exc}") from None
    addresses = list(dict.fromkeys(str(answer[4][0]) for answer in answers))
    if not addresses:
        raise FetchError(f"cannot resolve {host}: no address")
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        kind = refusal(address)
        if kind is not None and not any(address in network for network in allowed):
            raise FetchError(f"refused address: {host} resolves to {text} ({kind}); private, loopback, "
                             f"link-local, multicast and reserved addresses are refused unless their network is "
                             f"allowed ({ALLOW_SETTING})")
    return addresses
