"""Webhooks over real HTTP: a local server (loopback) receives the monitor's alert, and a
webhook endpoint that refuses or is down never stops the monitor."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import trio

from thotto.config import Settings
from thotto.engine import open_engine


class Receiver:
    """A webhook endpoint on 127.0.0.1 in a thread: keeps every JSON body POSTed to it and
    answers ``status``."""

    def __init__(self, status: int = 204):
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers["content-length"])
                receiver.paths.append(self.path)
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/thotto"

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


def settings(tmp_path, url: str) -> Settings:
    return Settings(data_dir=str(tmp_path), monitor_interval_seconds=0.1, alert_waiting=0,
                    alert_webhook_url=url, shutdown_grace_seconds=1)


async def wait_until(condition, timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.02)


async def test_an_alert_is_posted_to_the_webhook(tmp_path):
    with Receiver().running() as receiver:
        async with open_engine(settings(tmp_path, receiver.url), run_workers=False) as engine:
            await engine.enqueue("test.job", queue="mail")  # no workers: it waits, 1 > 0
            await wait_until(lambda: receiver.bodies)
            assert engine.tree.monitor.status() == "degraded"
    (body,) = receiver.bodies
    assert receiver.paths == ["/hooks/thotto"]
    assert (body["event"], body["name"], body["queue"], body["value"], body["threshold"]) == (
        "alert", "backlog", "mail", 1, 0)
    assert "1 jobs wait in queue mail" in body["message"]


async def test_a_failing_webhook_is_logged_and_the_monitor_goes_on(tmp_path, caplog):
    with Receiver(status=500).running() as receiver:
        async with open_engine(settings(tmp_path, receiver.url), run_workers=False) as engine:
            monitor = engine.tree.monitor
            await engine.enqueue("test.job", queue="mail")
            await wait_until(lambda: monitor.webhooks_failed == 1)
            taken = monitor.snapshots_taken
            await wait_until(lambda: monitor.snapshots_taken > taken + 2)
            assert [c.state.value for c in engine.tree.supervisor.children() if c.name == "monitor"] == ["running"]
    assert any("webhook alert" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)


async def test_an_unreachable_webhook_does_not_stop_the_monitor(tmp_path):
    with Receiver().running() as receiver:
        url = receiver.url  # a port that was listening and is closed now
    async with open_engine(settings(tmp_path, url), run_workers=False) as engine:
        monitor = engine.tree.monitor
        await engine.enqueue("test.job")
        await wait_until(lambda: monitor.webhooks_failed == 1)
        taken = monitor.snapshots_taken
        await wait_until(lambda: monitor.snapshots_taken > taken + 2)
        assert monitor.webhooks_sent == 0
