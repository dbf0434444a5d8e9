"""A local webhook receiver for tests: records requests and checks signatures itself.

The check is written here from the Standard Webhooks text (HMAC-SHA256 over
`id.timestamp.body` with the base64-decoded secret), independent of the library the
service signs with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def signature_valid(secret: str, headers: dict, body: bytes) -> bool:
    """Whether any v1 signature in the headers matches the body under `secret`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(f"v1,{expected}", candidate)
        for candidate in headers.get("webhook-signature", "").split(" ")
    )


class Receiver:
    """ThreadingHTTPServer on 127.0.0.1; `behaviour[path]` says how each path answers.

    A behaviour is a list of status codes answered in turn (the last repeats), or
    ("sleep", seconds) before a 200, or ("redirect", location).
    """

    def __init__(self):
        self.requests: list[dict] = []
        self.behaviour: dict[str, object] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.answer(self, body)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, handler, body: bytes) -> None:
        path = handler.path
        with self.lock:
            seen = sum(1 for r in self.requests if r["path"] == path)
            record = {
                "path": path,
                "headers": {k.lower(): v for k, v in handler.headers.items()},
                "body": body,
                "at": time.monotonic(),
                "status": None,
            }
            self.requests.append(record)
        rule = self.behaviour.get(path, [200])
        location = None
        if isinstance(rule, tuple) and rule[0] == "sleep":
            if seen == 0:
                time.sleep(rule[1])
            status = 200
        elif isinstance(rule, tuple) and rule[0] == "redirect":
            status, location = 302, rule[1]
        else:
            status = rule[min(seen, len(rule) - 1)]
        record["status"] = status
        try:
            handler.send_response(status)
            if location:
                handler.send_header("Location", location)
            handler.send_header("Content-Length", "2")
            handler.end_headers()
            handler.wfile.write(b"ok")
        except OSError:
            pass  # the deliverer went away (killed mid-delivery)

    def received(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def events(self, path: str) -> list[dict]:
        """The parsed bodies of requests answered 2xx on a path."""
        return [
            json.loads(r["body"])
            for r in self.received(path)
            if r["status"] and 200 <= r["status"] < 300
        ]
