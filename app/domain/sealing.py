"""Sealing webhook secrets, so a Redis dump alone does not reveal them."""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.config import Settings

_LABEL = b"orchestrator webhook secrets v1"


def _fernet(material: str) -> Fernet:
    # A key of its own, derived from the configured secret: the JWT signing key itself
    # never encrypts anything.
    digest = hmac.new(material.encode(), _LABEL, hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


class SecretBox:
    """Fernet (AES-128-CBC + HMAC-SHA256) under ORCHESTRATOR_WEBHOOK_SECRET_KEY.

    Without that variable the key is derived from ORCHESTRATOR_JWT_SECRET. Keys derived
    from the JWT secret and ORCHESTRATOR_JWT_SECRET_PREVIOUS still open what they sealed,
    so setting a dedicated key, or rotating the JWT secret, loses nothing.
    """

    def __init__(self, settings: Settings):
        materials = [
            settings.webhook_secret_key,
            settings.jwt_secret,
            settings.jwt_secret_previous,
        ]
        # MultiFernet seals with the first key and opens with any.
        self._box = MultiFernet([_fernet(m) for m in materials if m])

    def seal(self, secret: str) -> str:
        """The secret, encrypted and authenticated, as text for a Redis hash."""
        return self._box.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str | None:
        """The secret back, or None when no configured key opens it (a rotated key)."""
        try:
            return self._box.decrypt(sealed.encode()).decode()
        except InvalidToken:
            return None
