"""What a script call needs from a rate-limit hit that rides on it (the app's limiter,
app/rate_rider.py, is the one implementation): the domain knows no Flask."""

from __future__ import annotations

from typing import Protocol


class Rider(Protocol):
    """A rate-limit hit that rides on the next script call (app/rate_rider.py): the
    limiter's slot and the operation in one round trip."""

    def take(self) -> dict | None:
        """The hit waiting for this request's first script call, once; else None."""

    def landed(self, hit: dict, window: list) -> None:
        """The window the script read for `hit`; raises when the hit was refused (the
        script then did nothing else)."""
