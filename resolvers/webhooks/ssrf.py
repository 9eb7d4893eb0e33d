"""Where webhooks may go: https to public addresses (unless private networks are allowed).

Checked twice: when an endpoint is saved (early feedback) and at every attempt, after
resolving the name. The attempt then connects to the address that was checked (the URL's
host is replaced by it; the ``Host`` header and TLS SNI/certificate check keep the name),
so a name that resolves to a public address for the check and to a private one for the
connection (DNS rebinding) gets nowhere. Redirects are not followed: the sender treats
a 3xx as a failed attempt, so a public receiver cannot bounce a delivery inside.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

MAX_URL_LENGTH = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The URL or the address it resolves to may not receive webhooks; says why."""


@dataclass(frozen=True, slots=True)
class PinnedTarget:
    urls: list[httpx.URL]
    """The endpoint's URL with its host replaced by each checked address, in the
    resolver's order (the next is tried only when connecting to one fails)."""
    host_header: str
    sni_hostname: str | None


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def parse_target(url: str, *, allow_private: bool) -> httpx.URL:
    """The URL if its form is acceptable (scheme, host, no credentials); an IP literal host
    must be public. Names are checked by ``resolve``."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise TargetRefused(f"is not a valid URL ({exc})") from None
    schemes = {"https", "http"} if allow_private else {"https"}
    if parsed.scheme not in schemes:
        raise TargetRefused("must be an https:// URL")
    if not parsed.host:
        raise TargetRefused("must name a host")
    if parsed.userinfo:
        raise TargetRefused("must not carry credentials (authenticate with the signature)")
    literal = _ip_literal(parsed.host)
    if literal is not None and not allow_private and not is_public(literal):
        raise TargetRefused(f"{literal} is not a public address")
    return parsed


async def resolve(url: httpx.URL, *, allow_private: bool) -> PinnedTarget:
    """Resolve the host; every address it has must be public (one private record would
    let a receiver's DNS pick our internal network). Raises ``TargetRefused``."""
    host = url.host
    addresses = await _addresses(host, url.port or (443 if url.scheme == "https" else 80))
    if not allow_private:
        refused = [a for a in addresses if not is_public(a)]
        if refused:
            raise TargetRefused(f"{host} resolves to a non-public address ({refused[0]})")
    return PinnedTarget(
        urls=[url.copy_with(host=str(address)) for address in addresses],
        host_header=url.netloc.decode("ascii"),
        sni_hostname=host if url.scheme == "https" and _ip_literal(host) is None else None,
    )


async def _addresses(host: str, port: int) -> list[IPAddress]:
    literal = _ip_literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"{host} does not resolve ({exc})") from None
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in found:
            found.append(address)
    if not found:
        raise TargetRefused(f"{host} does not resolve")
    return found


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
