"""Webhooks over real HTTP: a receiver on loopback checks each delivery's signature as the README
tells receivers to, sees a retry after it answered 500, gets a published post's event, and a
delivery that a stopped Thotto could not make is made by the next start (it is a stored job)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import trio

from tests.api.conftest import api_settings, serving
from thotto.app import open_app
from thotto.config import Settings
from thotto.engine.jobs import JobState, utcnow
from thotto.scheduler import webhooks

SECRET = "whsec_test_secret"


def verified(secret: str, header: str, body: bytes, tolerance: float = 300) -> bool:
    """The receiver's check, as README.md shows it (written out here, not imported)."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return abs(time.time() - timestamp) <= tolerance and hmac.compare_digest(expected, fields["v1"])


class Receiver:
    """A webhook endpoint on 127.0.0.1 in a thread. It answers the statuses in ``answers`` in
    turn (then 204), and keeps every request: its body, headers and whether its signature held."""

    def __init__(self, *answers: int, port: int = 0):
        self.requests: list[dict] = []
        self.answers = list(answers)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers["content-length"]))
                signature = self.headers.get("x-thotto-signature", "")
                receiver.requests.append({
                    "body": json.loads(raw), "event": self.headers.get("x-thotto-event"),
                    "delivery": self.headers.get("x-thotto-delivery"),
                    "verified": bool(signature) and verified(SECRET, signature, raw),
                    "forged": bool(signature) and verified("another secret", signature, raw)})
                status = receiver.answers.pop(0) if receiver.answers else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/thotto"

    def events(self, name: str) -> list[dict]:
        return [request for request in self.requests if request["event"] == name]

    @contextlib.contextmanager
    def running(self):
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join()


def settings(tmp_path, url: str, **overrides) -> Settings:
    values = dict(data_dir=str(tmp_path), monitor_interval_seconds=0.1, alert_waiting=0,
                  alert_webhook_url=url, webhook_secret=SECRET, shutdown_grace_seconds=1)
    return Settings(**{**values, **overrides})


async def wait_until(condition, timeout: float = 30.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.02)


async def delivered(store, delivery_id: int) -> None:
    with trio.fail_after(30):
        while (await store.get_job(delivery_id)).state is not JobState.COMPLETED:
            await trio.sleep(0.05)


async def test_a_signed_webhook_is_retried_after_the_receiver_answers_500(tmp_path):
    with Receiver(500).running() as receiver:
        async with open_app(settings(tmp_path, receiver.url, alert_waiting=1_000_000)) as app:
            delivery = await webhooks.announce(app.services, "post_failed", {"post_id": 7})
            await delivered(app.store, delivery)
    first, retry = receiver.requests
    assert first["body"] == retry["body"] and first["delivery"] == retry["delivery"] == str(delivery)
    assert first["verified"] and retry["verified"] and not first["forged"]
    assert (first["event"], first["body"]["event"], first["body"]["post_id"]) == (
        "post_failed", "post_failed", 7)


async def test_the_delivery_log_shows_attempts_status_and_the_last_error(sandbox, tmp_path):
    with Receiver(500, 503).running() as receiver:
        config = api_settings(tmp_path, sandbox.url, alert_webhook_url=receiver.url,
                              webhook_secret=SECRET)
        async with serving(config) as api:
            delivery = await webhooks.announce(api.app.services, "post_failed", {"post_id": 7})
            await wait_until(lambda: len(receiver.requests) >= 2)
            failing = (await api.admin.client.get("/api/monitoring/webhooks")).json()["deliveries"]
            await delivered(api.app.store, delivery)
            log = (await api.admin.client.get("/api/monitoring/webhooks")).json()["deliveries"]
            assert (await api.pro.client.get("/api/monitoring/webhooks")).status_code == 403
    (before,) = failing
    assert before["status"] in ("retrying", "sending") and before["attempts"] >= 2
    assert before["status"] == "sending" or "HTTP 503" in before["lastError"]
    (after,) = log
    assert (after["id"], after["event"], after["url"], after["status"], after["attempts"],
            after["lastError"]) == (delivery, "post_failed", receiver.url, "delivered", 3, None)
    assert [request["verified"] for request in receiver.requests] == [True] * 3


async def test_a_published_post_is_announced_once(sandbox, tmp_path):
    with Receiver().running() as receiver:
        config = api_settings(tmp_path, sandbox.url, alert_webhook_url=receiver.url,
                              webhook_secret=SECRET)
        async with serving(config) as api:
            when = utcnow() + timedelta(seconds=2)
            created = await api.pro.client.post("/api/scheduled-posts", json={
                "subreddit": "test", "title": "Announced", "text": "hi", "scheduledFor": when.isoformat()})
            assert created.status_code == 201, created.text
            post_id = created.json()["posts"][0]["id"] if "posts" in created.json() else created.json()["id"]
            await wait_until(lambda: receiver.events("post_published"))
            await trio.sleep(0.5)  # room for a second announcement, which must not come
    (published,) = receiver.events("post_published")
    body = published["body"]
    assert (body["post_id"], body["user"], body["subreddit"], body["title"]) == (
        post_id, "pro", "test", "Announced")
    assert body["reddit_url"] and body["reddit_id"]
    assert published["verified"]


async def test_a_delivery_a_stopped_thotto_could_not_make_is_made_after_a_restart(tmp_path):
    with Receiver().running() as receiver:
        port = receiver.server.server_address[1]
        url = receiver.url
    # Nothing listens at url now: the first run's tries fail (connection refused).
    config = settings(tmp_path, url, alert_waiting=1_000_000)
    async with open_app(config) as app:
        delivery = await webhooks.announce(app.services, "post_failed", {"post_id": 7})
        with trio.fail_after(15):
            while (job := await app.store.get_job(delivery)).attempt < 1 or job.state is not JobState.PENDING:
                await trio.sleep(0.05)
        assert "did not answer" in job.last_error
    with Receiver(port=port).running() as receiver:
        async with open_app(config) as app:
            await delivered(app.store, delivery)
    (made,) = receiver.requests
    assert made["verified"] and made["delivery"] == str(delivery) and made["body"]["post_id"] == 7
