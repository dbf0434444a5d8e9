"""Schemas shared by every area: errors and the small field types."""

from __future__ import annotations

from marshmallow import Schema, fields


class StrictSchema(Schema):
    """Request bodies: unknown fields are an error, not silently dropped."""

    class Meta:
        unknown = "raise"


class ErrorSchema(Schema):
    detail = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    current_status = fields.String()


class JsonObject(fields.Dict):
    """A JSON object of any shape (payload, metadata)."""

    def __init__(self, **kwargs):
        super().__init__(keys=fields.String(), **kwargs)
