"""Outgoing webhook requests: only to the subscription's URL, never to the office network, no redirects.

``post`` resolves the host, refuses it when ANY of its addresses is not a public one (loopback,
private, link-local, multicast, reserved...) unless ``allow_private`` (the admin's
``FIELDSYNC_WEBHOOKS_ALLOW_PRIVATE``), and connects to an address it checked, never resolving the
name a second time (a DNS answer that changes between check and connect cannot reach a private
address). Redirects are not followed: a 3xx is a failed attempt like any other non-2xx. The whole
exchange has one deadline (connect, send, and the receiver's status line), so a receiver that
answers slowly is a timeout, not a stuck dispatcher.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2000


class TargetRefused(Exception):
    """The URL may not be called: bad scheme, no host, or an address outside the public internet."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: scheme, host, port and the path with its query."""

    scheme: str
    host: str
    port: int
    path: str


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt got: the status (``None`` when no answer came) or the error, and the time taken."""

    status: int | None
    error: str | None
    elapsed_ms: int
    retry_after: float | None = None


def parse_target(url: str) -> Target:
    """Check the shape of a webhook URL (http or https, a host, no credentials); raise ``TargetRefused``."""
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"the URL is not valid: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("the URL must start with http:// or https://")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    if parts.username or parts.password:
        raise TargetRefused("the URL may not carry a user name or password (sign with the secret instead)")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path)


def is_public(address: str) -> bool:
    """Tell whether an IP address is on the public internet (not loopback, private, link-local, reserved...)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_literal_host(target: Target, allow_private: bool) -> None:
    """Refuse a URL whose host is a non-public IP literal or ``localhost`` (checked when a subscription is saved)."""
    if allow_private:
        return
    if target.host.lower() == "localhost" or target.host.lower().endswith(".localhost"):
        raise TargetRefused("the URL points at this machine (localhost)")
    try:
        public = is_public(target.host)
    except ValueError:
        return  # a name: checked at every delivery, once resolved
    if not public:
        raise TargetRefused("the URL points at a private or local network address")


def resolve(target: Target, allow_private: bool) -> list[str]:
    """The addresses of the target's host, every one checked; raise ``TargetRefused`` if any is not public."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"the host {target.host!r} does not resolve: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise TargetRefused(f"the host {target.host!r} has no address")
    if not allow_private:
        refused = [a for a in addresses if not is_public(a)]
        if refused:
            raise TargetRefused(f"the host {target.host!r} resolves to a non-public address ({refused[0]})")
    return addresses


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to an address checked beforehand (the Host header still names the host)."""

    def __init__(self, target: Target, address: str, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """An HTTPS connection to a checked address; the certificate is verified against the host name."""

    def __init__(self, target: Target, address: str, timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(target.host, target.port, timeout=timeout, context=self._tls)
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: the backoff decides


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool) -> Answer:
    """POST ``body`` to ``url`` once; every failure (refused target, connection, timeout) is an ``Answer``."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = parse_target(url)
        addresses = resolve(target, allow_private)
    except TargetRefused as exc:
        return Answer(None, f"refused: {exc}", elapsed())
    deadline = started + timeout
    last_error = "no address"
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Answer(None, "timeout", elapsed())
        kind = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
        connection = kind(target, address, remaining)
        try:
            connection.request(
                "POST",
                target.path,
                body=body,
                headers={**headers, "Content-Type": "application/json", "User-Agent": "Fieldsync-Webhooks/1"},
            )
            if connection.sock is not None:
                connection.sock.settimeout(max(0.001, deadline - time.monotonic()))
            response = connection.getresponse()
            # Only the status line and headers count: the body of the answer is not read.
            return Answer(response.status, None, elapsed(), _retry_after(response.getheader("Retry-After")))
        except TimeoutError:
            return Answer(None, "timeout", elapsed())
        except (OSError, http.client.HTTPException) as exc:
            last_error = f"{type(exc).__name__}: {exc}"[:500]
        finally:
            connection.close()
    return Answer(None, last_error, elapsed())
