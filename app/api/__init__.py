"""Thin blueprints: parse the request, call the domain, shape the answer."""

from __future__ import annotations

from app.schemas.common import ErrorSchema

# What each error status means, as the OpenAPI spec describes it. Every one has the
# {"detail", "errors"?, "current_status"?} body of app.errors.error_response.
ERROR_DESCRIPTIONS = {
    400: "Malformed JSON body",
    401: "Not authenticated",
    403: "Role too weak",
    404: "Not found",
    409: "Transition not allowed",
    413: "Request body too large",
    422: "Invalid request",
    429: "Rate limited",
    503: "Redis unavailable",
}
# Every rate-limited operation that reads Redis may answer these two.
LIMITED = (429, 503)
# Operations with a JSON body may also meet a malformed or over-long body.
WITH_BODY = (400, 413, 422)


def document_errors(blp, *codes: int, **descriptions: str):
    """Document each error status in `codes` on a view (descriptions: `e404="..."`)."""

    def decorate(view):
        for code in sorted(set(codes)):
            description = descriptions.get(f"e{code}", ERROR_DESCRIPTIONS[code])
            view = blp.alt_response(code, schema=ErrorSchema, description=description)(view)
        return view

    return decorate
