"""Webhooks: events POSTed as JSON to ``alert_webhook_url``, signed, retried, logged.

Every event (``post_published``, ``post_failed``, ``account_needs_relink``, ``alert``) becomes a
job of the engine's ``webhooks`` queue (kind ``thotto.webhook``) holding the URL and the exact
body. A worker POSTs it; any answer but 2xx, or no answer, retries the job with exponential
backoff (``webhook_max_attempts`` tries), so a receiver that is down or failing gets the event
later, and a restart of Thotto loses none (the job is in the store). The delivery log is those
jobs: :func:`deliveries`.

Signing, as Stripe does: ``X-Thotto-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>" with webhook_secret>``. The timestamp is signed with the body, so a receiver
that refuses old timestamps refuses replays. ``X-Thotto-Event`` names the event and
``X-Thotto-Delivery`` is the delivery's id, the same on every retry (to drop repeats: delivery is
at least once).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from datetime import datetime
from typing import Any

import httpx
import msgspec

from thotto.engine.errors import RetryableJobError
from thotto.engine.handlers import JobContext, RetryPolicy
from thotto.engine.jobs import JobState, NewJob
from thotto.engine.store.base import JobSearch
from thotto.services import Services

log = logging.getLogger("thotto.webhooks")

WEBHOOK_QUEUE = "webhooks"
WEBHOOK_KIND = "thotto.webhook"
TIMEOUT_SECONDS = 10.0
SIGNATURE_HEADER = "X-Thotto-Signature"
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 3600.0


class Delivery(msgspec.Struct, kw_only=True):
    """A webhook job's payload: where to POST, and the body (already encoded, so every retry
    sends the very bytes that were signed the first time... and signs them again, with a new
    timestamp)."""

    event: str
    url: str
    body: msgspec.Raw


class DeliveryView(msgspec.Struct, kw_only=True, rename="camel"):
    """One line of the delivery log."""

    id: int
    event: str
    url: str
    status: str
    """``pending`` (waiting for its first try), ``retrying``, ``sending``, ``delivered`` or
    ``failed`` (given up after every try)."""
    attempts: int
    created_at: datetime
    next_try_at: datetime | None
    last_error: str | None


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Thotto-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None,
           tolerance_seconds: float = 300) -> bool:
    """What a receiver does (the README shows the same in a few lines): the signature matches
    the body and the timestamp is recent."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    fresh = abs((time.time() if now is None else now) - timestamp) <= tolerance_seconds
    return fresh and hmac.compare_digest(expected, fields.get("v1", ""))


def retry_policy(settings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.webhook_max_attempts, base_seconds=BACKOFF_BASE_SECONDS,
                       cap_seconds=BACKOFF_CAP_SECONDS)


async def announce(services: Services, event: str, details: dict[str, Any], *,
                   dedupe_key: str | None = None) -> int | None:
    """Queue ``event`` for delivery (durably: it is a job); the delivery's id, or None when no
    ``alert_webhook_url`` is set. ``dedupe_key`` keeps one live delivery per key (an event that
    may be announced again, e.g. by a publication job that runs twice)."""
    settings = services.settings
    if not settings.alert_webhook_url:
        return None
    body = msgspec.json.encode({"event": event, "at": services.clock.now().isoformat(), **details})
    delivery = Delivery(event=event, url=settings.alert_webhook_url, body=msgspec.Raw(body))
    result = await services.store.enqueue(NewJob(
        queue=WEBHOOK_QUEUE, kind=WEBHOOK_KIND, payload=msgspec.json.encode(delivery),
        max_attempts=settings.webhook_max_attempts, dedupe_key=dedupe_key))
    return result.job_id


class Sender:
    """The ``thotto.webhook`` handler: one POST per attempt (webhooks are few: a client per
    attempt keeps nothing open between them)."""

    def __init__(self, settings, metrics=None):
        self.secret = settings.webhook_secret
        self.metrics = metrics
        if not self.secret and settings.alert_webhook_url:
            log.warning("webhooks are sent unsigned: set webhook_secret (THOTTO_WEBHOOK_SECRET) "
                        "so receivers can check they come from this Thotto")

    async def handle(self, ctx: JobContext) -> None:
        delivery = ctx.payload(Delivery)
        body = bytes(delivery.body)
        headers = {"content-type": "application/json", "user-agent": "thotto-webhooks",
                   "x-thotto-event": delivery.event, "x-thotto-delivery": str(ctx.job.id)}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, int(ctx.now().timestamp()), body)
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as http:
                response = await http.post(delivery.url, content=body, headers=headers)
        except httpx.HTTPError as error:
            self._count("failed")
            raise RetryableJobError(f"{delivery.url} did not answer: {type(error).__name__}: "
                                    f"{error}") from error
        if not 200 <= response.status_code < 300:
            self._count("failed")
            raise RetryableJobError(f"{delivery.url} answered HTTP {response.status_code}: "
                                    f"{response.text[:200]}")
        self._count("sent")
        log.info("webhook %s delivered to %s", delivery.event, delivery.url,
                 extra={"job_id": ctx.job.id, "attempt": ctx.attempt, "event": delivery.event})

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.webhooks.labels(result).inc()


_STATUS = {JobState.COMPLETED: "delivered", JobState.DEAD: "failed", JobState.PROCESSING: "sending",
           JobState.CANCELLED: "cancelled"}


async def deliveries(store, *, cursor: str | None = None, limit: int = 50,
                     ) -> tuple[list[DeliveryView], str | None]:
    """The delivery log, newest first: one line per webhook job; the next page's cursor."""
    page = await store.search_jobs(JobSearch(queue=WEBHOOK_QUEUE, kind=WEBHOOK_KIND,
                                             cursor=cursor, limit=limit))
    return [_view(record.job) for record in page.jobs], page.next_cursor


def _view(job) -> DeliveryView:
    try:
        delivery = msgspec.json.decode(job.payload, type=Delivery)
        event, url = delivery.event, delivery.url
    except msgspec.DecodeError:
        event, url = "?", "?"
    status = _STATUS.get(job.state) or ("retrying" if job.last_error else "pending")
    # A pending job's attempt counts the tries made; a finished one's includes its last.
    return DeliveryView(id=job.id, event=event, url=url, status=status, attempts=job.attempt,
                        created_at=job.created_at,
                        next_try_at=job.run_at if job.state is JobState.PENDING else None,
                        last_error=None if job.state is JobState.COMPLETED else job.last_error)
