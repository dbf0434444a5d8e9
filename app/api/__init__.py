"""Thin blueprints: parse the request, call the domain, shape the answer."""
