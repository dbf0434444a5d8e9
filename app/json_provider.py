"""JSON responses encoded by orjson: every API answer goes through app.json.response.

flask-smorest still dumps each body with its schema (which documents it) and hands the
result to flask.jsonify; only the last step, turning dicts into bytes, changes. The
stdlib encoder that Flask uses by default spends a few percent of every request there.

What stays as Flask's default provider wrote it: compact separators (indented when the
app is in debug or `compact` is False), key order (sort_keys), a trailing newline, and
Flask's encoding of dates (HTTP dates), Decimal, UUID and dataclasses. The one visible
difference is deliberate: non-ASCII text goes out as UTF-8 rather than \\uXXXX escapes
(the same JSON, in fewer bytes). What orjson refuses, and whatever a caller asks for with
options, is written by Flask's own code exactly as before.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

# Dates and dataclasses go to Flask's default() so they encode as before (orjson would
# write ISO 8601 and its own dataclass mapping); Decimal and the rest reach it anyway.
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class OrjsonProvider(DefaultJSONProvider):
    """Flask's JSON provider with orjson doing the encoding."""

    def _options(self) -> int:
        return _PASSTHROUGH | (orjson.OPT_SORT_KEYS if self.sort_keys else 0)

    def _encode(self, obj: Any) -> bytes:
        """Compact UTF-8 JSON; the stdlib encoder for what orjson refuses.

        orjson refuses integers beyond 64 bits (payloads may hold longer ones), nesting
        deeper than 254 levels, non-string keys and lone surrogates: the stdlib writes
        the first three as before (ASCII, a lone surrogate escaped) and raises on what
        it cannot encode either.
        """
        try:
            return orjson.dumps(obj, default=self.default, option=self._options())
        except orjson.JSONEncodeError:
            return super().dumps(obj, separators=(",", ":")).encode()

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Compact, like response() (the stdlib's own default would put spaces after , and :).

        Callers that pass options (the session cookie, the OpenAPI document's indent)
        get exactly what they ask for from the stdlib encoder.
        """
        if kwargs:
            return super().dumps(obj, **kwargs)
        return self._encode(obj).decode()

    def response(self, *args: Any, **kwargs: Any) -> Response:
        if (self.compact is None and self._app.debug) or self.compact is False:
            return super().response(*args, **kwargs)  # indented for people: not hot
        body = self._encode(self._prepare_response_obj(args, kwargs))
        return self._app.response_class(body + b"\n", mimetype=self.mimetype)
