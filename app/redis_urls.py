"""The REDIS_URL grammar, read once: which topology, which nodes, TLS or not.

Settings validation and the client factory (app/redis_client.py) both read a URL
through parse(), so a URL the configuration accepts is one the factory can build.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

SINGLE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SCHEMES = (*SINGLE_SCHEMES, *SENTINEL_SCHEMES, *CLUSTER_SCHEMES, "memory")
EXPECTED = (
    "must be redis://, rediss://, unix://, "
    "redis+sentinel://host:port[,host:port...]/<service>[/db] or "
    "redis+cluster://host:port[,host:port...] (rediss+ for TLS)"
)


@dataclass(frozen=True)
class RedisTarget:
    """What a REDIS_URL names: a topology and how to reach it."""

    topology: str  # "single", "sentinel", "cluster" or "memory"
    url: str
    tls: bool = False
    nodes: tuple[tuple[str, int], ...] = ()  # sentinels or cluster seed nodes
    service: str = ""  # the sentinels' name for the primary
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None  # sentinels often have their own, or none


def parse(url: str) -> RedisTarget:
    """Read a REDIS_URL; ValueError says what is wrong with it."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError(EXPECTED)
    if scheme == "memory":
        return RedisTarget("memory", url)
    if not rest.strip("/"):
        raise ValueError(EXPECTED)
    if scheme != "unix":
        _refuse_split_credentials(rest)
    if scheme in SINGLE_SCHEMES:
        if scheme != "unix":
            _check_single(rest)
        return RedisTarget("single", url, tls=scheme == "rediss")
    parts = _split(rest)
    nodes = tuple(_node(item) for item in parts.netloc.rpartition("@")[2].split(","))
    path = [segment for segment in parts.path.split("/") if segment]
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    common = {
        "tls": scheme.startswith("rediss"),
        "nodes": nodes,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
    }
    # redis-py reads nothing else from these URLs: an option left there would be dropped.
    if set(query) - ({"sentinel_password"} if scheme in SENTINEL_SCHEMES else set()):
        raise ValueError(
            "a sentinel URL reads only ?sentinel_password= and a cluster URL no query: "
            "any other option would be ignored"
        )
    if scheme in CLUSTER_SCHEMES:
        if path not in ([], ["0"]):
            raise ValueError("a Redis Cluster has only database 0; drop the path")
        return RedisTarget("cluster", url, **common)
    if not 1 <= len(path) <= 2 or (len(path) == 2 and not _digits(path[1])):
        raise ValueError("redis+sentinel:// needs /<service>[/db] after the sentinels")
    return RedisTarget(
        "sentinel",
        url,
        service=path[0],
        db=int(path[1]) if len(path) == 2 else 0,
        sentinel_password=query.get("sentinel_password"),
        **common,
    )


def _node(item: str) -> tuple[str, int]:
    host, _, port = item.strip().rpartition(":")
    host = host.strip("[]")  # an IPv6 literal
    if not host or not _digits(port) or not 0 < int(port) < 65536:
        raise ValueError(f"{item!r} is not host:port")
    return host, int(port)


def _split(rest: str):
    # urlsplit's own errors may quote the netloc, password included (NFKC check).
    try:
        return urlsplit(f"http://{rest}")
    except ValueError:
        raise ValueError("the host part is not host:port (a password may be in it)") from None


def _refuse_split_credentials(rest: str) -> None:
    # A / ? or # in the credentials ends the host part early (RFC 3986), so the rest of
    # the password would be read as a port, a path or a query, and quoted in errors
    # (even a traceback at start-up). No host, path or query name holds an @ before an
    # =, so one there is a password's; the message never quotes the URL.
    host_end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    if "@" in rest[host_end:].partition("=")[0]:
        raise ValueError(
            "the credentials hold an unencoded / ? or #: percent-encode them (%2F %3F %23)"
        )


def _check_single(rest: str) -> None:
    # redis-py builds these clients itself but misreads some URLs silently: a path that
    # is no number is database 0, /0/1 is 1, and ?db= wins over the path; a port that
    # is no number fails only when a worker builds its pool.
    parts = _split(rest)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or (port is None and parts.netloc.rpartition("@")[2].endswith(":")):
        raise ValueError("redis:// takes one host[:port], the port a number from 1 to 65535")
    path = [segment for segment in parts.path.split("/") if segment]
    if len(path) > 1 or (path and not _digits(path[0])):
        raise ValueError("redis:// takes at most one path segment: the database number")
    if path and "db" in parse_qs(parts.query):
        raise ValueError("name the database once: in the path or as ?db=, not both")


def _digits(text: str) -> bool:
    # isascii: isdigit() also takes '²' and other digits int() refuses.
    return text.isascii() and text.isdigit()
