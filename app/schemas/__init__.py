"""Marshmallow schemas: the single source of request validation, responses and the docs."""
