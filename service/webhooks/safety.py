"""Where webhooks may go: no private, loopback or link-local targets (SSRF), https in production.

Checked when a subscription is registered and again before every attempt, because DNS can change.
Plain-http deliveries connect to the address that was checked (the name is only the Host header);
https ones connect by name, and a rebinding to an internal address then fails the certificate check
before a byte of the payload is sent.
"""

import asyncio
import ipaddress
import re
import socket
import unicodedata
from dataclasses import dataclass

import httpx

from service.settings import Settings

MAX_URL_LENGTH = 2000
# A host name as DNS knows it once IDNA-encoded (underscores occur in real names); IP literals aside.
HOST_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")
# Spaces, line breaks, control and invisible formatting characters: never part of a URL as written.
UNPRINTABLE_CATEGORIES = {"Cc", "Cf", "Zs", "Zl", "Zp"}


class UnsafeUrl(Exception):
    """The URL may not be used; `code` is a service.errors.ErrorCode."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code, self.detail = code, detail


class Unresolvable(Exception):
    """The name does not resolve (now): refused at registration, retried at delivery."""


@dataclass(frozen=True)
class Target:
    url: str  # what to connect to (the checked address for plain http)
    host_header: str | None  # the original Host, when the URL was rewritten to an address


def parse(url: str, settings: Settings) -> httpx.URL:
    """Shape checks that need no network: absolute http(s), no credentials, https in production."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl("webhook_url_invalid", f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if any(unicodedata.category(character) in UNPRINTABLE_CATEGORIES for character in url):
        raise UnsafeUrl("webhook_url_invalid", "The URL contains a space or a control character.")
    try:
        parsed = httpx.URL(url)
        host = parsed.host  # decoded from punycode here: a malformed xn-- label raises (idna's error is a ValueError)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise UnsafeUrl("webhook_url_invalid", str(exc) or "The host is not a valid name.") from exc
    if parsed.scheme not in ("http", "https") or not host:
        raise UnsafeUrl("webhook_url_invalid", "Give an absolute http:// or https:// URL.")
    # httpx takes any number as a port; the socket layer then fails on every attempt.
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise UnsafeUrl("webhook_url_invalid", "The port must be between 1 and 65535.")
    if not _is_ip_literal(host) and not HOST_NAME.fullmatch(parsed.raw_host.decode("ascii", "replace")):
        raise UnsafeUrl("webhook_url_invalid", "The host is not a valid name or IP address.")
    if parsed.userinfo:
        raise UnsafeUrl("webhook_url_invalid", "Credentials in the URL are not accepted.")
    if settings.environment == "production" and parsed.scheme != "https":
        raise UnsafeUrl("webhook_url_https_required", "Only https URLs are accepted in production.")
    return parsed


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# IPv6 ranges no webhook needs and that reach (or may reach) inside: deprecated or local-use forms
# whose embedded IPv4 address, if any, a gateway on the way may honour. Python calls several "global".
REFUSED_IPV6_NETWORKS = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        "::/96",  # IPv4-compatible (::a.b.c.d), deprecated
        "64:ff9b:1::/48",  # NAT64 for local use (RFC 8215)
        "2001::/32",  # Teredo: the client address is only obfuscated
        "fec0::/10",  # site-local, deprecated but still routed inside some networks
    )
)
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries inside it (mapped, translated, NAT64, 6to4), if any."""
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address in NAT64_WELL_KNOWN or address in IPV4_TRANSLATED:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in network for network in REFUSED_IPV6_NETWORKS):
            return False
        # A NAT64 or 6to4 gateway turns these into their IPv4 address: judge that one.
        address = embedded_ipv4(address) or address
    # is_global excludes private, loopback, link-local (cloud metadata), shared (CGNAT) and reserved ranges.
    return address.is_global and not address.is_multicast


def _exempt(host: str, settings: Settings) -> bool:
    return settings.webhook_allow_private_networks or host.lower() in {
        h.lower() for h in settings.webhook_allowed_hosts
    }


async def resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolvable(f"{host} does not resolve: {exc}") from exc
    addresses = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise Unresolvable(f"{host} has no address")
    return addresses


async def check(url: str, settings: Settings) -> Target:
    """The target to connect to, or UnsafeUrl / Unresolvable."""
    parsed = parse(url, settings)
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = await resolve(host, port)
    if not _exempt(host, settings):
        refused = [str(address) for address in addresses if not is_public_address(address)]
        if refused:
            raise UnsafeUrl(
                "webhook_url_not_allowed",
                f"{host} resolves to a private, loopback or link-local address ({', '.join(refused)}).",
            )
    if parsed.scheme == "http" and str(addresses[0]) != host:
        netloc = parsed.netloc.decode("ascii")
        return Target(url=str(parsed.copy_with(host=str(addresses[0]))), host_header=netloc)
    return Target(url=str(parsed), host_header=None)
