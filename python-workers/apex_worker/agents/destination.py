"""Where provider calls may go: never to a private network unless the operator allowed it
for that provider (`allow_private`).

A provider's host is resolved, and the call refused if ANY address it resolves to is
loopback, link-local, private (RFC 1918, fc00::/7, CGNAT 100.64/10), unspecified,
multicast or otherwise not globally routable. The check runs twice, from one cache:

- before each request (`check`), so a refused call fails early with a clear message;
- when a connection opens (`GuardedBackend`), which connects to the very addresses that
  were checked rather than resolving the name again, so a DNS answer that changes
  between the check and the connection (rebinding) cannot slip through.

Answers are cached per host for `CACHE_TTL_S`: DNS can change, but a lookup per request
would cost more than the check is worth.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterable

import httpcore
import httpx

from apex_worker.agents.errors import ProviderError
from apex_worker.errors import NoRetry

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CACHE_TTL_S = 10.0
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class DestinationRefused(NoRetry):
    """The provider's host resolves to an address the operator did not allow."""


def address_class(address: IPAddress) -> str | None:
    """The kind of non-public address `address` is, or None if it is globally routable."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one is judged as itself: ::ffff:127.0.0.1 is
        # 127.0.0.1, and 2002:0a00:0001:: (6to4) carries 10.0.0.1.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return address_class(embedded)
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "CGNAT (shared, 100.64.0.0/10)"
    if address.is_private:
        return "private"
    if address.is_reserved or not address.is_global:
        return "reserved (not globally routable)"
    return None


class Resolver:
    """Resolves and checks hosts, caching answers for `ttl_s`. One per process."""

    def __init__(self, ttl_s: float = CACHE_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._cache: dict[tuple[str, int], tuple[float, list[IPAddress]]] = {}

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            pass
        now = time.monotonic()
        cached = self._cache.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            # Often passing (a resolver hiccup): a later attempt may do better.
            raise ProviderError(f"cannot resolve {host}: {exc}") from None
        # Keep the resolver's order, which is the order connections should try.
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        self._cache[(host, port)] = (now + self.ttl_s, addresses)
        return addresses

    async def checked(
        self, label: str, host: str, port: int, allow_private: bool
    ) -> list[IPAddress]:
        """The addresses of `host`; raises DestinationRefused if one is not public and
        the provider (named by `label` in the message) does not allow private ones."""
        addresses = await self.resolve(host, port)
        if not allow_private:
            for address in addresses:
                kind = address_class(address)
                if kind is not None:
                    where = host if host.strip("[]") == str(address) else f"{host} ({address})"
                    raise DestinationRefused(
                        f"{label}: {where} is a {kind} address, and the worker's operator "
                        "has not allowed private destinations for this provider "
                        "(allow_private)"
                    )
        if not addresses:
            raise ProviderError(f"{label}: {host} resolves to no address")
        return addresses

    def clear(self) -> None:
        self._cache.clear()


#: The resolver every provider call of this process uses.
resolver = Resolver()


async def check(label: str, url: str, allow_private: bool) -> None:
    """Refuses (DestinationRefused) a request to `url` that would reach a non-public
    address without `allow_private`."""
    parsed = httpx.URL(url)
    await resolver.checked(label, parsed.host, _port(parsed), allow_private)


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to checked addresses. TLS still
    verifies the certificate against the host name: httpcore passes the URL's host as
    the server name whatever address the socket went to."""

    def __init__(self, label: str, allow_private: bool) -> None:
        self._label = label
        self._allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolver.checked(self._label, host, port, self._allow_private)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # try the next address, as a resolver-based connect would
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("provider calls never use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(
    label: str, allow_private: bool, limits: httpx.Limits
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections go through `GuardedBackend`."""
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    # httpx has no public way to choose httpcore's network backend; its pool is rebuilt
    # with the same settings plus ours. Checked, so an httpx that changes this fails
    # loudly rather than connecting unguarded.
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError("this httpx version is not supported: no httpcore connection pool")
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(label, allow_private),
    )
    return transport
