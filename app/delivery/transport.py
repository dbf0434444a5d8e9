"""One webhook POST, safely: addresses checked after resolution, no redirects, small reads.

The connection goes to the very address that was checked, so a name that resolves to a
public address when checked and to a private one a moment later (DNS rebinding) cannot
reach the private one.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import sys
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.domain.destinations import refused_address

TIMEOUT_SECONDS = 5.0
MAX_RESPONSE_BYTES = 4096


@dataclass(frozen=True)
class Answer:
    """What the receiver said: its status (None when it never answered) or what failed."""

    status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        """A 2xx answer delivers."""
        return self.status is not None and 200 <= self.status < 300


class Refused(Exception):
    """The destination may not be contacted."""


def resolve(host: str, port: int, allow_private: bool) -> str:
    """The address to connect to; every address the name resolves to must be allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise Refused(f"cannot resolve {host}: {error.strerror}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        for address in addresses:
            reason = refused_address(address)
            if reason:
                raise Refused(f"refused: {host} resolves to {reason}")
    return addresses[0]


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP connection to `address`, the checked one, whatever its host resolves to now.

    Overrides connect(), HTTPConnection's documented way to open the socket; the Host
    header still names the host.
    """

    def __init__(self, host: str, port: int, address: str):
        super().__init__(host, port, timeout=TIMEOUT_SECONDS)
        self.address = address
        self.expired = False
        self.wire = None  # the socket, even once http.client hands it to the response

    def expire(self):
        """The time is up (called from a timer): end whatever wait the socket is in."""
        self.expired = True
        if self.wire is not None:
            with contextlib.suppress(OSError):  # socket.socket's: a TLS socket's own would
                socket.socket.shutdown(self.wire, socket.SHUT_RDWR)  # drop its SSL state

    def connect(self):
        sys.audit("http.client.connect", self, self.host, self.port)
        self.sock = self.wire = socket.create_connection(
            (self.address, self.port), self.timeout, self.source_address
        )
        if self.expired:  # the time ran out while connecting
            self.expire()
        # As the base class does: no small write waits for the receiver's delayed ACK.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedTLSConnection(_PinnedConnection):
    """The same over TLS, which still verifies the certificate for the host's name."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int, address: str):
        super().__init__(host, port, address)
        self.context = ssl.create_default_context()

    def connect(self):
        super().connect()
        self.sock = self.wire = self.context.wrap_socket(self.sock, server_hostname=self.host)
        if self.expired:  # the time ran out during the handshake
            self.expire()


def _connection(url: str, allow_private: bool) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    address = resolve(parts.hostname, port, allow_private)
    conn = (_PinnedTLSConnection if https else _PinnedConnection)(parts.hostname, port, address)
    path = parts.path or "/"
    return conn, f"{path}?{parts.query}" if parts.query else path


def post(url: str, body: bytes, headers: dict[str, str], allow_private: bool) -> Answer:
    """POST once, answered within TIMEOUT_SECONDS in all; a redirect is an answer like any
    other (never followed)."""
    try:
        conn, target = _connection(url, allow_private)
    except Refused as error:
        return Answer(None, str(error))
    # The socket's timeout bounds each wait, not the whole: a receiver sending a byte every
    # few seconds would hold the attempt (and its deliverer's round) for hours.
    deadline = threading.Timer(TIMEOUT_SECONDS, conn.expire)
    deadline.daemon = True
    deadline.start()
    try:
        conn.request("POST", target, body=body, headers=headers)
        response = conn.getresponse()
        response.read(MAX_RESPONSE_BYTES)  # enough to be polite; the rest is dropped
        status = response.status
    except (OSError, http.client.HTTPException) as error:
        status, failure = None, f"{type(error).__name__}: {error}"[:300]
    finally:
        deadline.cancel()
        conn.close()
    if conn.expired:  # cut short, even when what came looks whole (a body ended by close)
        return Answer(None, f"timed out: no complete answer within {TIMEOUT_SECONDS:g} s")
    if status is None:
        return Answer(None, failure)
    if 300 <= status < 400:
        return Answer(status, f"redirect ({status}) not followed")
    return Answer(status, None if 200 <= status < 300 else f"HTTP {status}")
