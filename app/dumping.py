"""Response bodies dumped by a plan read from their schema, for the hottest answers.

flask-smorest dumps a view's return value with the schema `@blp.response` names, through
marshmallow's per-field machinery (serialize, get_value, the accessor, _serialize): about
a tenth of the CPU a task read takes. `respond(Schema, body)` produces the same dict (same
keys, order and values) from a plan built once per schema out of its declared fields,
and returns the JSON response that flask-smorest passes through untouched, so the
decorator still documents the schema and nothing else about the answer changes.

The plan covers the field types our response schemas use, with marshmallow's own
conversions: String and Timestamp (`str()`, bytes decoded), Integer (`int()`), Boolean
(as is), Dict and JsonObject (string keys), List (each item converted, so the `{}` cjson
writes for an empty list dumps as `[]`) and Nested, each by its exact type. A schema with
anything else (another field type or a subclass, a dump default, a hook, a source
attribute) is dumped by marshmallow itself, and so is a body that is not a plain dict;
tests/test_dumping.py checks that both dumps agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import marshmallow
from flask import Response, current_app
from marshmallow import Schema, fields, missing
from marshmallow.utils import ensure_text_type

from app.schemas.common import JsonObject, Timestamp
from app.schemas.common import Schema as ResponseSchema

Dump = Callable[[Any], Any]
_plans: dict[type[Schema], Dump] = {}


def _text(value):
    if value is None or type(value) is str:
        return value
    return ensure_text_type(value)


def _integer(value):
    if value is None or type(value) is int:
        return value
    return int(value)


def _same(value):
    return value


def _converter(field: fields.Field) -> Dump | None:
    """marshmallow's conversion of this field's value, or None when the plan cannot say."""
    kind = type(field)
    if field.dump_default is not missing or field.attribute is not None:
        return None
    # Exact types (ours declare nothing else): a subclass may convert otherwise, so it is
    # left to marshmallow, and nothing here reads marshmallow's private attributes.
    if kind in (fields.String, Timestamp):
        return _text
    if kind is fields.Integer:
        return None if field.as_string else _integer
    if kind is fields.Boolean:
        return _same
    if kind in (fields.Dict, JsonObject) and field.mapping_type is dict:
        return _mapping(field)
    if kind is fields.List:
        inner = _converter(field.inner)
        if inner is None:
            return None
        return lambda value: None if value is None else [inner(item) for item in value]
    if kind is fields.Nested and not field.many:
        nested = _plan(field.schema)
        if nested is None:
            return None
        return lambda value: None if value is None else nested(value)
    return None


def _mapping(field: fields.Dict) -> Dump | None:
    if field.value_field is not None:
        return None
    if field.key_field is None:
        return lambda value: None if value is None else dict(value)
    key = _converter(field.key_field)
    if key is None:
        return None
    return lambda value: None if value is None else {key(k): v for k, v in value.items()}


def _plan(schema: Schema) -> Dump | None:
    """A function dumping a dict exactly as `schema.dump` would, or None."""
    kind = type(schema)
    if schema.many or any(kind.resolve_hooks().values()) or schema.dict_class is not dict:
        return None
    # Both accessors read obj[name], then getattr(obj, name): on a dict, a method's name.
    if kind.get_attribute not in (ResponseSchema.get_attribute, marshmallow.Schema.get_attribute):
        return None
    steps = []
    for name, field in schema.dump_fields.items():
        convert = _converter(field)
        if convert is None or hasattr(dict, name) or "." in name:
            return None
        steps.append((field.data_key or name, name, convert))

    def dump(obj):
        if type(obj) is not dict:
            return schema.dump(obj)
        out = {}
        for key, name, convert in steps:
            value = obj.get(name, missing)
            if value is not missing:
                out[key] = convert(value)
        return out

    return dump


def dumper(schema_class: type[Schema]) -> Dump:
    """The dump function of a response schema: its plan, else marshmallow's dump."""
    dump = _plans.get(schema_class)
    if dump is None:
        schema = schema_class()
        dump = _plans[schema_class] = _plan(schema) or schema.dump
    return dump


def respond(schema_class: type[Schema], body: dict) -> Response:
    """The JSON response flask-smorest would build from `body` with `schema_class`."""
    return current_app.json.response(dumper(schema_class)(body))
