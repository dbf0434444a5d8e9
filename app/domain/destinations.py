"""Where webhooks may go: http(s) URLs whose addresses are public (SSRF protection)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2000


def refused_address(address: str) -> str | None:
    """Why an IP address may not receive webhooks (None when it is public)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return f"{ip} is a {kind.replace('_', '-')} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def literal_address(host: str) -> str | None:
    """The host when it is an IP literal, else None (a name is checked after resolution)."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    return host


def url_problem(url: str, allow_private: bool) -> str | None:
    """Why a URL cannot be a webhook destination (None when it can, as far as text shows)."""
    if len(url) > MAX_URL_LENGTH:
        return f"at most {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "only http:// and https:// URLs with a host are allowed"
    if parts.username or parts.password:
        return "credentials in the URL are not allowed; put a token in the path"
    literal = literal_address(parts.hostname)
    if literal and not allow_private:
        reason = refused_address(literal)
        if reason:
            return f"refused: {reason} (ORCHESTRATOR_WEBHOOK_ALLOW_PRIVATE is off)"
    return None
