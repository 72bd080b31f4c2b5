"""Which addresses the server may POST to on a user's behalf (job webhooks).

A job's webhook is a request the *server* makes, from inside its network: to
``127.0.0.1`` it would reach the server's own admin-only ports, to
``169.254.169.254`` a cloud's instance credentials. So only public (global)
unicast addresses are allowed, and the networks the admin lists in
``MODELYARD_WEBHOOK_ALLOW`` (e.g. ``10.0.0.0/8,127.0.0.1/32``).

A URL is checked twice: at submit, when its host is a literal address or
resolves now (so a typo is a 422 at once), and at send time on the address
the name resolves to then, which is the one the sender connects to — a name
that resolved to a public address at submit and to 127.0.0.1 later (DNS
rebinding) is refused then. A name that resolves to any refused address is
refused.
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from modelyard.errors import ErrorCode, ModelyardError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ALLOW_VARIABLE = "MODELYARD_WEBHOOK_ALLOW"


class RefusedDestination(ModelyardError):
    def __init__(self, url: str, address: Address, kind: str) -> None:
        super().__init__(ErrorCode.INVALID, f"webhook {url!r} goes to {address}, a {kind} address, which jobs may "
                                            f"not reach (an admin may allow it with {ALLOW_VARIABLE})",
                         field="webhooks")
        self.address = address


def parse_allow(entries: Iterable[str]) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip())
    except ValueError as exc:
        raise ModelyardError(ErrorCode.INVALID, f"not a network: {exc}", field=ALLOW_VARIABLE) from None


def refused_kind(address: Address, allow: tuple[Network, ...]) -> str | None:
    """Why ``address`` may not be reached (``"loopback"``, ...), or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(address in net for net in allow if net.version == address.version):
        return None
    for kind in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-public"


def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` names now (a literal address is itself); [] when it does not resolve."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))


def host_and_port(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port  # .port raises on a port out of range
    except ValueError:
        host, port = None, None
    if not host:
        raise ModelyardError(ErrorCode.INVALID, f"webhook {url!r} is not a URL with a host", field="webhooks")
    return host, port or (443 if parts.scheme == "https" else 80)


def checked_addresses(url: str, allow: tuple[Network, ...]) -> list[Address]:
    """The addresses ``url``'s host resolves to now, all allowed; ``RefusedDestination`` otherwise."""
    addresses = resolve(*host_and_port(url))
    for address in addresses:
        kind = refused_kind(address, allow)
        if kind is not None:
            raise RefusedDestination(url, address, kind)
    return addresses


def check_webhooks(urls: Iterable[str], allow: tuple[Network, ...]) -> None:
    """At submit: refuse (422, naming the webhook) a URL whose host is, or now resolves to, a refused address."""
    for url in urls:
        checked_addresses(url, allow)
