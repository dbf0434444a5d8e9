"""The envelope the JSON answers share: `success` first and, in a list, its `count`.

Declared and described once here; an answer's schema inherits them (they come before its
own fields) and the view fills them: {"success": True, "count": len(items), ...}. The
subclasses share these field objects, so describe() them here only.
"""

from __future__ import annotations

from marshmallow import fields

from app.schemas.common import COUNT, Schema, describe


class EnvelopeSchema(Schema):
    """An answer that says `success` before what it carries."""

    success = fields.Boolean(required=True)


class ListEnvelopeSchema(EnvelopeSchema):
    """A list answer: `success`, then how many items it holds, then the items."""

    count = fields.Integer(required=True)


describe(EnvelopeSchema, success=("Always true on a 2xx answer", True))
describe(ListEnvelopeSchema, count=COUNT)
