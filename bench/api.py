"""HTTP API latency at a fixed request rate.

* ``api.get_cached.p50|p99|max`` (ms) and ``api.get_cached.rps``: ``GET /api/scheduled-posts``
  (a pro user's list, served from the cache after the first request) offered at 500 req/s.
* ``api.schedule.p50|p99|max`` (ms) and ``api.schedule.rps``: ``POST /api/scheduled-posts`` (one
  post, unique titles, an hour or more ahead) offered at 100 req/s.
* ``api.get_cached.max_rps``: the most GETs/s wrk gets with 16 connections (when wrk is installed).

The server is Thotto (``open_app(serve_api=True)``, SQLite) in its own process, with a sandbox
for its Reddit account in that process too (only used at setup: linking, community rules); the
per-user API rate limit is raised so the bench measures latency rather than 429s. The load
generator is a raw-socket keep-alive client in the bench process: open loop, request i goes out at
t0 + i/rate on a free connection, and its latency counts from that planned time, so a server that
falls behind shows up as latency rather than as a slower offered rate. Every reply must be 200
(GET) or 201 (POST), else the bench fails.

Why: the dashboard and the API's users feel these numbers; the targets are from issue #5.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import timedelta
from functools import partial
from pathlib import Path

import trio

from bench.common import Result, latency_results, progress, report, stop_processes
from thotto.engine.jobs import utcnow
from thotto.usecases.accounts import link_with_password

TARGETS = {
    "api.get_cached.p50": ("<=", 2.0),
    "api.get_cached.p99": ("<=", 10.0),
    "api.schedule.p99": ("<=", 15.0),
}
STORES = (None,)  # the server runs on SQLite
GET_RATE, POST_RATE = 500, 100
GET_CONNECTIONS, POST_CONNECTIONS = 16, 8
START_TIMEOUT_SECONDS = 60


def seconds_of_load(quick: bool) -> float:
    return 1.0 if quick else 10.0


async def run(kind: str | None, quick: bool, postgres_dsn: str | None) -> list[Result]:
    duration = seconds_of_load(quick)
    with tempfile.TemporaryDirectory(prefix="thotto-api-") as tmp:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "bench.api", "--data-dir", tmp], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL)
        try:
            with trio.fail_after(START_TIMEOUT_SECONDS):
                server = json.loads(await _first_line(process))
            return await measure(server["host"], server["port"], server["token"], duration)
        finally:
            await stop_processes([process])


async def measure(host: str, port: int, token: str, duration: float) -> list[Result]:
    get = (f"GET /api/scheduled-posts HTTP/1.1\r\nHost: {host}\r\n"
           f"Authorization: Bearer {token}\r\n\r\n").encode()
    progress(f"  api: GET /api/scheduled-posts at {GET_RATE} req/s for {duration:.0f} s")
    await offered_load(host, port, lambda i: get, GET_RATE, 0.5, GET_CONNECTIONS, 200)  # warm-up
    latencies, achieved = await offered_load(host, port, lambda i: get, GET_RATE, duration, GET_CONNECTIONS, 200)
    params = {"offered_rps": GET_RATE, "connections": GET_CONNECTIONS, "requests": len(latencies)}
    results = [report(r) for r in latency_results("api.get_cached", latencies, None, params)]
    results.append(report(Result("api.get_cached.rps", achieved, "req/s", None, params)))
    if shutil.which("wrk"):
        progress("  api: wrk, 16 connections, as many GETs as the server takes")
        most = await wrk_rps(f"http://{host}:{port}/api/scheduled-posts", token, min(duration, 5.0))
        results.append(report(Result("api.get_cached.max_rps", most, "req/s", None,
                                     {"tool": "wrk", "connections": 16, "threads": 1})))
    else:
        progress("  api: wrk not installed, api.get_cached.max_rps skipped")
    progress(f"  api: POST /api/scheduled-posts at {POST_RATE} req/s for {duration:.0f} s")
    first_due = utcnow() + timedelta(hours=1)
    latencies, achieved = await offered_load(host, port, partial(schedule_request, host, token, first_due),
                                             POST_RATE, duration, POST_CONNECTIONS, 201)
    params = {"offered_rps": POST_RATE, "connections": POST_CONNECTIONS, "requests": len(latencies)}
    results += [report(r) for r in latency_results("api.schedule", latencies, None, params)]
    results.append(report(Result("api.schedule.rps", achieved, "req/s", None, params)))
    return results


def schedule_request(host: str, token: str, first_due, i: int) -> bytes:
    body = json.dumps({"subreddit": "test", "title": f"bench post {i}", "text": "body",
                       "scheduledFor": (first_due + timedelta(seconds=i)).isoformat()}).encode()
    return (f"POST /api/scheduled-posts HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


# --- the load generator ---------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection: send a request, read one response."""

    def __init__(self, stream: trio.SocketStream):
        self.stream = stream
        self.buffer = b""

    async def exchange(self, request: bytes) -> int:
        """Send ``request``; the response's status (its body is read and dropped)."""
        await self.stream.send_all(request)
        while b"\r\n\r\n" not in self.buffer:
            await self._receive()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if length is None:
            raise RuntimeError(f"a response without content-length: {head[:200]!r}")
        while len(self.buffer) < int(length[1]):
            await self._receive()
        self.buffer = self.buffer[int(length[1]):]
        return int(head.split(b" ", 2)[1])

    async def _receive(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise RuntimeError("the server closed a keep-alive connection")
        self.buffer += chunk


async def offered_load(host: str, port: int, request_for, rate: float, duration: float,
                       connections: int, expected_status: int) -> tuple[list[float], float]:
    """Send ``rate * duration`` requests on a schedule (open loop) over ``connections``
    keep-alive connections; the latencies (ms, from each request's planned time) and the rate
    achieved."""
    count = int(rate * duration)
    idle_send, idle_receive = trio.open_memory_channel[Connection](connections)
    opened = [Connection(await trio.open_tcp_stream(host, port)) for _ in range(connections)]
    for connection in opened:
        idle_send.send_nowait(connection)
    latencies: list[float] = []

    async def one(index: int, planned: float, connection: Connection) -> None:
        status = await connection.exchange(request_for(index))
        if status != expected_status:
            raise RuntimeError(f"request {index} answered {status}, expected {expected_status}")
        latencies.append((trio.current_time() - planned) * 1000)
        idle_send.send_nowait(connection)

    try:
        started = trio.current_time()
        with trio.fail_after(duration * 3 + 30):
            async with trio.open_nursery() as nursery:
                for index in range(count):
                    planned = started + index / rate
                    await trio.sleep_until(planned)
                    connection = await idle_receive.receive()  # all busy: the wait counts as latency
                    nursery.start_soon(one, index, planned, connection)
        return latencies, count / (trio.current_time() - started)
    finally:
        for connection in opened:
            await connection.stream.aclose()


async def wrk_rps(url: str, token: str, seconds: float) -> float:
    finished = await trio.run_process(
        ["wrk", "-t1", "-c16", f"-d{max(1, round(seconds))}s", "-H", f"Authorization: Bearer {token}", url],
        capture_stdout=True, check=True)
    found = re.search(rb"Requests/sec:\s*([\d.]+)", finished.stdout)
    if found is None:
        raise RuntimeError(f"wrk said: {finished.stdout[-500:]!r}")
    return float(found[1])


async def _first_line(process: trio.Process) -> str:
    received = b""
    while b"\n" not in received:
        chunk = await process.stdout.receive_some()
        if not chunk:
            raise RuntimeError("the API server process exited before it was ready")
        received += chunk
    return received.split(b"\n", 1)[0].decode()


# --- the server process ----------------------------------------------------------------------


async def serve(data_dir: Path) -> None:
    """Sandbox, then Thotto with its API; one pro user with a token, a linked account and 20
    scheduled posts; prints ``{"host", "port", "token"}`` and serves until SIGINT/SIGTERM."""
    from thotto.usecases import tokens
    from thotto.config import Settings
    from thotto.app import open_app
    from thotto.scheduler.records import NewPost, NewUser, PostContent, Tier
    from thotto.reddit.sandbox import SandboxConfig, serve_sandbox

    async with trio.open_nursery() as nursery:
        sandbox_port = await nursery.start(partial(serve_sandbox, "127.0.0.1", 0, data_dir / "sandbox",
                                                   config=SandboxConfig(rate_budget=100_000_000)))
        settings = Settings(
            data_dir=str(data_dir / "thotto"), api_port=0, reddit_url=f"http://127.0.0.1:{sandbox_port}",
            reddit_client_id="thotto-bench-app", reddit_client_secret="bench-secret",
            reddit_requests_per_minute=6000, shutdown_grace_seconds=1,
            api_requests_per_minute=1_000_000, api_burst=100_000)
        async with open_app(settings, serve_api=True) as app:
            server = app.tree.api
            user = await app.store.create_user(NewUser(name="bench_pro", tier=Tier.PRO))
            _, token = await tokens.mint(app.store, app.services.cache, user.id, "bench")
            account = await link_with_password(app.scheduler, user.id, "bench_acct", "bench-password")
            due = utcnow() + timedelta(days=1)
            await app.scheduler.schedule_posts([
                NewPost(user_id=user.id, account_id=account.id, scheduled_for=due + timedelta(minutes=i),
                        content=PostContent(subreddit="test", title=f"listed post {i}", text="body"))
                for i in range(20)])
            async with trio.open_nursery() as waiting:
                await waiting.start(app.tree.stop_on_signals)
                host, port = server.url.removeprefix("http://").rsplit(":", 1)
                print(json.dumps({"host": host, "port": int(port), "token": token}), flush=True)
                await app.tree.wait_stopped()
                waiting.cancel_scope.cancel()
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.api", description="serve Thotto's API for the bench")
    parser.add_argument("--data-dir", required=True, type=Path)
    trio.run(serve, parser.parse_args().data_dir)
