"""Decision links: signed URLs that let one principal decide one approval, once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

from app.config import Settings

SALT = "orchestrator.decision-link.v1"
DECISIONS = ("approve", "reject")


@dataclass(frozen=True)
class Link:
    """What a valid link grants: `principal` may make `decision` on `approval_id`."""

    approval_id: str
    principal: str
    decision: str

    @property
    def digest(self) -> str:
        """Its single-use mark: one link decision per principal and approval."""
        return hashlib.sha256(f"{self.approval_id}\0{self.principal}".encode()).hexdigest()


class DecisionLinks:
    """Signs and checks links with a key derived from ORCHESTRATOR_JWT_SECRET.

    The signature is deterministic, so a retried delivery carries the same links; links
    signed with ORCHESTRATOR_JWT_SECRET_PREVIOUS still open while it is set.
    """

    def __init__(self, settings: Settings):
        self.base = settings.public_url
        secrets = [settings.jwt_secret, settings.jwt_secret_previous]
        self.signer = URLSafeSerializer([s for s in secrets if s][::-1], salt=SALT)

    def url(self, approval_id: str, principal: str, decision: str) -> str:
        """The link under ORCHESTRATOR_PUBLIC_URL."""
        token = self.signer.dumps({"a": approval_id, "p": principal, "d": decision})
        return f"{self.base}/decisions/{token}"

    def links(self, approval_id: str, principals: list[str]) -> list[dict]:
        """data.links of an approval.requested delivery: one entry per approver."""
        return [
            {
                "principal": principal,
                "approve": self.url(approval_id, principal, "approve"),
                "reject": self.url(approval_id, principal, "reject"),
            }
            for principal in principals
        ]

    def read(self, token: str) -> Link | None:
        """The link a token stands for; None when tampered with or malformed."""
        try:
            claims = self.signer.loads(token)
        except BadSignature:
            return None
        if not isinstance(claims, dict) or claims.get("d") not in DECISIONS:
            return None
        if not all(isinstance(claims.get(k), str) for k in ("a", "p")):
            return None
        return Link(claims["a"], claims["p"], claims["d"])
