"""The typed calls of the webhook scripts (subscriptions, deliveries, decision links).

A part of Scripts (scripts.py), kept apart so each module stays one screenful of calls:
each method names its script's arguments once and returns the decoded reply.
"""

from __future__ import annotations


class WebhookScripts:
    """Webhook and decision-link scripts; Scripts provides _call()."""

    def _call(self, name: str, args: dict) -> dict:  # pragma: no cover - Scripts defines it
        raise NotImplementedError

    # Webhooks ------------------------------------------------------------------------

    def create_webhook(self, *, webhook: dict[str, str], max_webhooks: int) -> dict:
        """Store a subscription (and the deliverers' group): ok (webhook) or conflict."""
        return self._call("create_webhook", locals())

    def get_webhooks(self, *, webhook_id: str | None) -> dict:
        """One subscription or all: ok (webhooks) or not_found."""
        return self._call("get_webhooks", locals())

    def delete_webhook(self, *, webhook_id: str) -> dict:
        """Remove a subscription and its deliveries: ok or not_found."""
        return self._call("delete_webhook", locals())

    def fan_out(self, *, entries: list[dict], webhook_id: str | None, ack: list[str]) -> dict:
        """Events to deliveries, then XACK: ok (created) or not_found."""
        return self._call("fan_out", locals())

    def claim_deliveries(self, *, limit: int, lease_ms: int) -> dict:
        """Lease due deliveries: ok (claimed: [{delivery, webhook}])."""
        return self._call("claim_deliveries", locals())

    def record_attempt(
        self,
        *,
        delivery_id: str,
        attempt: int,
        series: str | None,
        delivered: bool,
        status_code: int | None,
        error: str | None,
        delay_ms: int,
    ) -> dict:
        """One attempt's outcome: ok (delivery) or not_found."""
        return self._call("record_attempt", locals())

    def list_deliveries(self, *, webhook_id: str, delivery_id: str | None, limit: int) -> dict:
        """A subscription's deliveries, newest first: ok (deliveries) or not_found."""
        return self._call("list_deliveries", locals())

    def retry_delivery(self, *, webhook_id: str, delivery_id: str) -> dict:
        """Make a delivery due now again: ok (delivery) or not_found."""
        return self._call("retry_delivery", locals())

    def spend_link(
        self, *, digest: str, ttl_ms: int, release: bool | None, peek: bool | None
    ) -> dict:
        """Use a decision link once (release it, or peek): ok or conflict (used)."""
        return self._call("spend_link", locals())
