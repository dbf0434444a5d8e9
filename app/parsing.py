"""Request bodies: JSON only, valid Unicode, numbers Python can hold; the blueprints' base.

Every view's body is read by webargs (through flask-smorest). The stock parser ignores a
body sent with another Content-Type (a view would then act on defaults), and lets a lone
surrogate or a 5,000-digit integer through to code that cannot encode or convert it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import flask_smorest
from flask import Request
from webargs import core
from webargs.flaskparser import FlaskParser

from app.errors import ApiError, ValidationFailed

# Python refuses to convert longer digit strings (int_max_str_digits); JSON has no limit.
MAX_DIGITS = sys.get_int_max_str_digits() or 4300


class UnsupportedMediaType(ApiError):
    """415: a body the endpoint cannot read (JSON endpoints take application/json)."""

    status = 415


class TooManyDigits:
    """An integer literal too long for Python: kept as a marker so the field is named."""

    def __init__(self, digits: str):
        self.length = len(digits)


def _integer(digits: str):
    return int(digits) if len(digits.lstrip("-")) <= MAX_DIGITS else TooManyDigits(digits)


def _unreadable(value: Any) -> str | None:
    """Why a parsed JSON value cannot be stored as it is, or None when it can."""
    pending = [value]
    while pending:  # iterative: nesting depth is the client's choice
        item = pending.pop()
        if isinstance(item, TooManyDigits):
            return f"Numbers may have at most {MAX_DIGITS} digits."
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "Must be valid Unicode text (a lone surrogate is not)."
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


class JsonBodyParser(FlaskParser):
    """webargs' parser, strict about what a JSON body is."""

    def _raw_load_json(self, req: Request) -> Any:
        """The body as JSON: 415 for another Content-Type, 422 naming an unstorable field."""
        body = req.get_data(cache=True)
        if not core.is_json(req.mimetype):
            if not body:
                return core.missing
            raise UnsupportedMediaType("Content-Type must be application/json")
        # Invalid UTF-8 raises UnicodeDecodeError, which webargs answers as a 400.
        value = json.loads(body.decode("utf-8"), parse_int=_integer)
        fields = value.items() if isinstance(value, dict) else [("_schema", value)]
        errors = {name: [why] for name, item in fields if (why := _unreadable(item))}
        if errors:
            raise ValidationFailed("Validation failed", errors=errors)
        return value


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with the strict JSON body parser."""

    ARGUMENTS_PARSER = JsonBodyParser()
