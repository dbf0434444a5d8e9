"""JSON responses are encoded by orjson (app/json_provider.py) and read as they did before.

"Before" is Flask's default provider, configured as the app had it (keys in insertion
order, compact): every body it wrote must still parse to the same value, and where
orjson cannot write a value itself the bytes are Flask's own.
"""

from __future__ import annotations

import datetime
import decimal
import json
import uuid

import pytest
from flask import Flask

from app.json_provider import OrjsonProvider


def flask_default(obj) -> bytes:
    """What the app's responses were before: Flask's provider, sort_keys off, compact."""
    app = Flask("before")
    app.json.sort_keys = False
    with app.app_context():
        return app.json.response(obj).get_data()


def test_responses_go_through_orjson_and_non_ascii_text_round_trips(app, api):
    assert isinstance(app.json, OrjsonProvider)
    payload = {"title": "Grüße — 日本語 ✓ \U0001f600", "note": 'tab\tquote"slash\\'}
    client = app.test_client()
    headers = {"X-API-Key": "agent-key-0123456789abcdef"}
    created = client.post("/tasks", json={"type": "bugfix", "payload": payload}, headers=headers)
    assert created.status_code == 201
    body = created.get_data()
    # orjson writes UTF-8; the stdlib encoder would have escaped each character (\u00fc).
    assert "Grüße — 日本語 ✓ \U0001f600".encode() in body
    assert b"\\u" not in body
    assert body.endswith(b"}\n")
    assert created.mimetype == "application/json"
    assert json.loads(body)["task"]["payload"] == payload
    task_id = created.json["task_id"]
    assert api.task(task_id)["payload"] == payload


def test_a_task_reads_back_byte_for_byte_as_the_stdlib_encoder_parses_it(app, api):
    """Keys keep the view's order (not sorted) and the body stays compact."""
    created = api.create(payload={"z": 1, "a": [1.5, None, True]}, metadata={"b": "x"})
    response = app.test_client().get(
        f"/tasks/{created['task_id']}", headers={"X-API-Key": "user-key-0123456789abcdef"}
    )
    body = response.get_data()
    assert body == flask_default(json.loads(body))
    assert list(response.json) == ["success", "task_id", "task"]
    assert list(response.json["task"]["payload"]) == ["z", "a"]


def test_integers_beyond_64_bits_in_a_payload_come_back_exactly(api):
    """orjson refuses them; the stdlib writes the whole response as it always did."""
    payload = {"big": 10**30, "negative": -(2**64), "nested": [{"n": 2**70}]}
    created = api.create(payload=payload)
    assert created["task"]["payload"] == payload
    assert api.task(created["task_id"])["payload"] == payload


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(2026, 1, 5, 10, 15, tzinfo=datetime.UTC),  # orjson: ISO 8601
        datetime.date(2026, 1, 5),
        decimal.Decimal("1.10"),  # orjson: refused
        uuid.UUID("3f2b8c1e-7d4a-4e8b-9c1f-2a6d5e4b7c90"),
        {1: "int key", None: "null key"},  # orjson: refused without an option
        10**30,
    ],
    ids=["datetime", "date", "decimal", "uuid", "non-string-keys", "bigint"],
)
def test_values_orjson_writes_differently_encode_as_flask_did(app, value):
    obj = {"value": value, "text": "é"}
    with app.app_context():
        body = app.json.response(obj).get_data()
    assert json.loads(body) == json.loads(flask_default(obj))
    if isinstance(value, (datetime.date, decimal.Decimal, uuid.UUID)):
        # Flask's own default(): an HTTP date, the Decimal's text, the UUID's text.
        assert body == flask_default(obj).replace(b"\\u00e9", "é".encode())
    else:
        assert body == flask_default(obj)  # the stdlib wrote it: ASCII, exactly as before


def test_an_unencodable_value_still_raises(app):
    with app.app_context(), pytest.raises(TypeError):
        app.json.response({"value": object()})


def test_dumps_with_options_is_flask_own(app):
    """The OpenAPI document asks for indent=2; the session cookie for separators."""
    obj = {"b": "é", "a": [1, 2]}
    with app.app_context():
        assert app.json.dumps(obj, indent=2) == json.dumps(obj, indent=2)
        assert app.json.dumps(obj) == '{"b":"é","a":[1,2]}'


def test_debug_responses_stay_indented(make_app):
    app = make_app()
    app.debug = True
    with app.app_context():
        body = app.json.response({"a": 1}).get_data()
    assert body == b'{\n  "a": 1\n}\n'
