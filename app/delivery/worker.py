"""The deliverer's loop: read the group, fan out, attempt what is due, record, repeat."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import redis

from app.config import Settings
from app.decision_links import DecisionLinks
from app.delivery import transport
from app.delivery.messages import build_request
from app.domain.delivery import Attempt, DeliveryQueue

log = logging.getLogger("orchestrator.deliverer")
BATCH = 100
PARALLEL = 8
JITTER = 0.2  # each delay is drawn within +-20 % so failed receivers are not hit in step


def backoff_ms(schedule: tuple[float, ...], attempt: int) -> int:
    """The delay before the attempt after `attempt` (1-based): the schedule, then its last."""
    base = schedule[min(attempt, len(schedule)) - 1]
    return int(base * random.uniform(1 - JITTER, 1 + JITTER) * 1000)  # noqa: S311 - jitter


class Deliverer:
    """One deliverer process; any number share the work through the consumer group."""

    def __init__(self, queue: DeliveryQueue, settings: Settings):
        self.queue = queue
        self.settings = settings
        self.links = DecisionLinks(settings)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="deliver")
        # Block on the stream well inside the Redis socket timeout.
        self.block_ms = max(50, int(settings.health_check_timeout * 1000) // 3)

    def run(self) -> None:
        """Deliver until SIGTERM or SIGINT; an attempt under way is finished first."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        self.queue.ensure_group()
        log.info("deliverer %s started", self.consumer)
        while not self.stopping.is_set():
            try:
                self.step()
            except Exception as error:  # noqa: BLE001 - Redis away or a bad entry: keep going
                log.exception("delivery step failed; retrying shortly")
                self.stopping.wait(1.0)
                if "NOGROUP" in str(error):  # Redis lost the group (flushed or restored)
                    with contextlib.suppress(redis.RedisError):
                        self.queue.ensure_group()
        self.pool.shutdown(wait=True)
        # A clean stop leaves the group, so `consumers` in /health counts live ones
        # (a killed deliverer stays listed; its entries are reclaimed all the same).
        with contextlib.suppress(redis.RedisError):
            self.queue.leave(self.consumer)
        log.info("deliverer %s stopped", self.consumer)

    def step(self) -> None:
        """One round: reclaim, read new entries, then attempt every due delivery."""
        self.queue.fan_out(self.queue.reclaim(self.consumer, BATCH))
        attempts, now = self.queue.claim(PARALLEL * 2)
        # With work due, only peek at the stream; idle, wait on it.
        block = 1 if attempts else self.block_ms
        self.queue.fan_out(self.queue.read_new(self.consumer, BATCH, block))
        if attempts:
            list(self.pool.map(lambda a: self.attempt(a, now), attempts))

    def attempt(self, attempt: Attempt, now: int) -> None:
        """Send one delivery and record what came of it."""
        webhook = attempt.webhook
        if attempt.secret is None and webhook.get("format") != "slack":
            answer = transport.Answer(None, "secret cannot be opened (secret key rotated?)")
        else:
            body, headers = build_request(attempt, self.links, now)
            answer = transport.post(
                webhook["url"], body, headers, self.settings.webhook_allow_private
            )
        delay = backoff_ms(self.settings.webhook_backoff, attempt.in_series)
        self.queue.record(
            attempt,
            delivered=answer.delivered,
            status_code=answer.status,
            error=answer.error,
            delay_ms=delay,
        )
        log.info(
            "delivery %s attempt %d: %s",
            attempt.delivery["delivery_id"],
            attempt.number,
            "delivered" if answer.delivered else answer.error,
        )


def run(queue: DeliveryQueue, settings: Settings) -> None:
    """Run one deliverer in this process until it is told to stop."""
    Deliverer(queue, settings).run()
