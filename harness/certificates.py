"""A self-signed TLS certificate for the name localhost, for servers started in tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def self_signed(directory: Path) -> tuple[Path, Path]:
    """(cert.pem, key.pem) in `directory`, made once: valid a day for localhost, which it
    also names as subjectAltName (the field hostname checks read)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if not cert.exists():
        if not shutil.which("openssl"):
            raise RuntimeError("openssl is needed to make a test certificate")
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
                *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
                *("-addext", "subjectAltName=DNS:localhost"),
            ],
            check=True,
            capture_output=True,
        )
    return cert, key
