"""Schemas shared by every area: errors and the small field types."""

from __future__ import annotations

import math

import marshmallow
from marshmallow import ValidationError, fields, validate

from app.domain.ids import AGENT_NAME, TASK_ID
from app.domain.model import TASK_TYPES


class Schema(marshmallow.Schema):
    """marshmallow's Schema, reading the dicts views return with a plain key lookup.

    The default accessor (marshmallow.utils.get_value) checks every field name for dots
    and the object for __getitem__ before the same obj[name]-then-getattr done here: a
    fifth of the time a dump takes, which a page of 100 tasks pays 2,600 times.
    """

    def on_bind_field(self, field_name: str, field_obj: fields.Field) -> None:
        """marshmallow's hook for each field an instance binds (its own copy): add what
        describe() says of it to its metadata, which apispec turns into the docs."""
        doc = field_doc(type(self), field_name)
        if doc:
            field_obj.metadata = {**field_obj.metadata, **doc}

    def get_attribute(self, obj, attr, default):
        """obj[attr], else the attribute, else `default`: what marshmallow returns."""
        if "." in attr:  # a nested path: marshmallow walks it
            return super().get_attribute(obj, attr, default)
        try:
            return obj[attr]
        except (KeyError, IndexError, TypeError, AttributeError):
            return getattr(obj, attr, default)


class StrictSchema(Schema):
    """Request bodies: unknown fields are an error, not silently dropped."""

    class Meta:
        unknown = "raise"


class ErrorSchema(Schema):
    """Every error: a message, per-field problems for 422, the current state for 409."""

    detail = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
    current_status = fields.String()


def error_doc(description: str) -> dict:
    """An error response in the OpenAPI spec: its description and the Error body."""
    return {"description": description, "content": {"application/json": {"schema": "Error"}}}


class FullMatch(validate.Regexp):
    """Regexp on the whole value: re.match's `$` would let a trailing newline through."""

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


# The validators of names every area takes: one wording of each error.
TASK_ID_FIELD = FullMatch(TASK_ID, error="Must be a task id (UUID4).")
AGENT_FIELD = FullMatch(AGENT_NAME, error="Must be an agent name like dev_agent.")
TASK_TYPE_FIELD = validate.OneOf(TASK_TYPES, error="Must be one of: {choices}.")


def finite_json(value: dict) -> None:
    """NaN and Infinity parse in Python but are not JSON: other consumers would choke."""
    pending = [value]
    while pending:  # iterative: nesting depth is the client's choice
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValidationError("NaN and Infinity are not valid JSON numbers.")
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


class JsonObject(fields.Dict):
    """A JSON object of any shape (payload, metadata), with finite numbers only."""

    def __init__(self, **kwargs):
        kwargs.setdefault("validate", finite_json)
        super().__init__(keys=fields.String(), **kwargs)


class Timestamp(fields.String):
    """A time the service wrote: ISO 8601 in UTC, a `date-time` in the OpenAPI document.

    A String rather than a DateTime so the stored text (Redis' clock, milliseconds, Z)
    goes out exactly as it was written.
    """

    def __init__(self, **kwargs):
        super().__init__(metadata={"format": "date-time"}, **kwargs)


# What describe() was told, by schema class and field name. Schema.on_bind_field (above)
# writes it into each instance's own fields, where apispec reads a field's metadata: the
# class's declared fields are marshmallow's private attribute, and a subclass shares its
# parent's field objects, so writing into those would document both alike.
_FIELD_DOCS: dict[type[marshmallow.Schema], dict[str, dict[str, object]]] = {}


def describe(schema: type[Schema], **fields_text: str | tuple[str, object]) -> None:
    """Document a schema's fields for OpenAPI: `name="text"` or `name=("text", example)`.

    A None text keeps the description the declaration already gives. A subclass inherits
    its parent's descriptions and may override each. Instances bind their fields when
    made, so describe a schema in its own module, before anything makes one.

    Written beside each schema rather than inside each declaration, so the declarations
    stay short; a test checks that every field of every schema in the spec has one.
    """
    known = schema().fields
    docs = _FIELD_DOCS.setdefault(schema, {})
    for name, text in fields_text.items():
        if name not in known:
            raise TypeError(f"{schema.__name__} has no field {name!r} to describe")
        description, *example = (text,) if isinstance(text, str) else text
        doc = docs.setdefault(name, {})
        if description is not None:
            doc["description"] = description
        if example:
            doc["example"] = example[0]


def field_doc(schema: type[marshmallow.Schema], name: str) -> dict[str, object]:
    """What describe() gave field `name` of `schema` or of the classes it inherits from,
    the nearest class last (so it wins)."""
    doc: dict[str, object] = {}
    for cls in reversed(schema.__mro__):
        doc.update(_FIELD_DOCS.get(cls, {}).get(name, {}))
    return doc


COUNT = "Number of items in this answer"
# Examples every area shows, so the task, its approval and their times match across the docs.
TASK_ID_EXAMPLE = "3f2b8c1e-7d4a-4e8b-9c1f-2a6d5e4b7c90"
APPROVAL_ID_EXAMPLE = f"apr-{TASK_ID_EXAMPLE}"
TIME_EXAMPLE = "2026-01-05T10:15:00.000Z"


describe(
    ErrorSchema,
    detail=("What went wrong, for people", "Task not found"),
    errors=("Per-field problems (422 only)", {"priority": ["Must be one of: P0, P1, P2, P3."]}),
    current_status=("The current state, when a transition is refused (409)", "completed"),
)
