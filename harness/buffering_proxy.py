"""A minimal buffering reverse proxy, the set-up the README asks for in front of gunicorn.

It reads each whole request (headers, then the Content-Length body) before it opens a
connection upstream, as nginx does with proxy_request_buffering, so a slow client holds
one of its threads, never a gunicorn worker. For tests only: no keep-alive, no chunking.
"""

from __future__ import annotations

import socket
import threading

from harness.processes import free_port

HEADER_TIMEOUT = 10.0  # nginx's client_header_timeout, as the README sets it


class BufferingProxy:
    """Listens on a free loopback port and forwards whole requests to `upstream_port`."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> BufferingProxy:
        """Accept connections in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting (connections in flight finish on their own)."""
        self._listener.close()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client:
            client.settimeout(HEADER_TIMEOUT)
            try:
                request = _read_request(client)
                with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
                    upstream.sendall(request)
                    while chunk := upstream.recv(65536):
                        client.sendall(chunk)
            except OSError:
                return


def _read_request(client: socket.socket) -> bytes:
    """The whole request, headers rewritten to close the upstream connection after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        if not chunk:
            raise OSError("client closed before its headers ended")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = client.recv(65536)
        if not chunk:
            raise OSError("client closed before its body ended")
        body += chunk
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body
