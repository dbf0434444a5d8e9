"""One webhook POST on the wire: to the address that was checked, and over verified TLS."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.delivery import transport
from harness.certificates import self_signed
from tests.receiver import Receiver

REBINDING_NAME = "hooks.rebinding.test"


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def rebinding_dns(monkeypatch):
    """REBINDING_NAME resolves to 127.0.0.1 once, then to an address nobody answers on:
    the DNS-rebinding trick, played against the check that ran on the first answer."""
    real, answers = socket.getaddrinfo, []

    def getaddrinfo(host, port, *args, **kwargs):
        if host != REBINDING_NAME:
            return real(host, port, *args, **kwargs)
        address = "127.0.0.1" if not answers else "192.0.2.1"  # TEST-NET-1: unreachable
        answers.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def test_the_post_goes_to_the_address_that_was_checked(receiver, rebinding_dns):
    url = receiver.url("/in", host=REBINDING_NAME)
    answer = transport.post(url, b'{"n": 1}', {"Content-Type": "application/json"}, True)
    assert (answer.status, answer.error, answer.delivered) == (200, None, True)
    assert rebinding_dns == ["127.0.0.1"]  # looked up once: the connection reused the check
    [request] = receiver.requests
    assert request["body"] == b'{"n": 1}'
    assert request["headers"]["host"] == f"{REBINDING_NAME}:{receiver.port}"


def test_a_name_that_resolves_to_a_private_address_is_refused_before_connecting(receiver):
    answer = transport.post(receiver.url("/in", host="localhost"), b"{}", {}, False)
    assert answer.status is None and "loopback" in answer.error
    assert receiver.requests == []


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for the name localhost."""
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_receiver(certificate):
    """An HTTPS server on 127.0.0.1 answering 204 to every POST; yields (port, bodies)."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], bodies
    server.shutdown()
    server.server_close()


def test_https_is_delivered_when_the_certificate_is_trusted_for_the_name(
    tls_receiver, certificate, monkeypatch
):
    port, bodies = tls_receiver
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust it, as a CA would be
    answer = transport.post(f"https://localhost:{port}/in", b"{}", {}, True)
    assert (answer.status, answer.error) == (204, None)
    assert bodies == [b"{}"]


def test_https_to_an_untrusted_certificate_is_not_delivered(tls_receiver):
    port, bodies = tls_receiver
    answer = transport.post(f"https://localhost:{port}/in", b"{}", {}, True)
    assert answer.status is None and "CERTIFICATE_VERIFY_FAILED" in answer.error
    assert bodies == []


def test_https_checks_the_certificate_against_the_name_not_the_address(
    tls_receiver, certificate, monkeypatch
):
    """Pinned to 127.0.0.1, the handshake still asks for the URL's host name."""
    port, bodies = tls_receiver
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    answer = transport.post(f"https://127.0.0.1:{port}/in", b"{}", {}, True)
    assert answer.status is None and "CERTIFICATE_VERIFY_FAILED" in answer.error
    assert bodies == []


@pytest.fixture(params=["whole answer", "body after closing headers"])
def trickling_receiver(request):
    """Answers 200 a byte at a time, each well inside the socket timeout: slow in all."""
    head, trickled = b"", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    if request.param != "whole answer":  # http.client hands the socket to the response
        head, trickled = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"o" * 40
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(head)
            for byte in trickled:
                if stop.wait(0.2):
                    return
                with contextlib.suppress(OSError):
                    conn.sendall(bytes([byte]))

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/in"
    stop.set()
    server.close()


def test_a_receiver_that_answers_too_slowly_in_all_is_timed_out(trickling_receiver, monkeypatch):
    """The timeout bounds the whole answer, not each wait: a trickle cannot hold a deliverer."""
    monkeypatch.setattr(transport, "TIMEOUT_SECONDS", 1.0)
    started = time.monotonic()
    answer = transport.post(trickling_receiver, b"{}", {}, True)
    assert time.monotonic() - started < 2.5
    assert not answer.delivered and "timed out" in answer.error and "1 s" in answer.error
