"""A WSGI target for tests: the service, plus GET /gc-probe answering how many objects
this worker has frozen out of the garbage collector's passes (gunicorn.conf.py)."""

from __future__ import annotations

import gc
import json
import os

from wsgi import app as service


def app(environ, start_response):
    if environ.get("PATH_INFO") != "/gc-probe":
        return service(environ, start_response)
    body = json.dumps({"pid": os.getpid(), "frozen": gc.get_freeze_count()}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
