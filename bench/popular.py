"""The popular minute: 10,000 posts due in the same minute across 2,000 accounts.

Thotto (engine and API, one process, its own) publishes to the Reddit sandbox (another process)
answering each submission in 100-300 ms (drawn uniformly), with Reddit's request budget set high
in the sandbox and at the most Thotto's settings allow (``reddit_requests_per_minute``); every
other setting is Thotto's default (8 workers, 64 I/O workers for the submissions). The posts' times are spread at random over one
minute a little ahead; the accounts belong to 200 pro users (10 each).

* ``popular.lateness.p50|p99|max`` (s): when the sandbox answered each submission minus the post's
  scheduled time. Target: all published within 90 s of their time (max ≤ 90 s).
* ``popular.in_flight.peak``: the most submissions the sandbox was handling at once.
* ``popular.api.get_cached.p50|p99|max`` (ms): ``GET /api/scheduled-posts`` of a user with posts a
  day ahead (served from the cache), offered at 50 req/s while the minute is published (open loop,
  latency from each request's planned time, as the api suite measures it).
* ``popular.rss.peak`` (MB): the Thotto process's peak resident set (VmHWM).
* ``popular.cpu.seconds`` (s): CPU time (user + system) the Thotto process spent from the first
  post's time to the last answer: on a shared machine lateness depends on the CPU share Thotto
  gets, so this says how much it needed (``share`` in its params: that CPU over the wall time).

Every post must reach the sandbox exactly once (its durable record is the judge), or the bench
fails. ``--quick``: 1,000 posts over 200 accounts, due within 10 s.

Why: posts cluster at the top of the hour; a scheduler that is punctual one post at a time can be
minutes late when thousands fall due together and each waits on Reddit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import msgspec
import trio

from bench.api import offered_load
from bench.common import Result, Target, latency_results, progress, report, stop_processes
from bench.databases import fresh_postgres_database
from bench.reliability import read_record
from thotto.config import Settings
from thotto.usecases.accounts import link_with_password

TARGETS = {"popular.lateness.max": Target("<=", 90.0)}
STORES = None  # the stores chosen with --store
ACCOUNTS_PER_USER = 10
LATENCY = (0.1, 0.3)  # seconds the sandbox takes to answer a submission
GET_RATE, GET_CONNECTIONS, GET_CHUNK_SECONDS = 50, 4, 2.0
CLIENT_ID, CLIENT_SECRET = "thotto-bench-app", "bench-secret"
START_TIMEOUT_SECONDS = 600  # linking 2,000 accounts goes at the request budget
PUBLISH_TIMEOUT_SECONDS = 1800
METER_PATH = "/_bench/meter"


@dataclass
class Size:
    posts: int
    accounts: int
    window: float  # seconds over which the posts fall due

    @classmethod
    def pick(cls, quick: bool) -> "Size":
        return cls(1_000, 200, 10.0) if quick else cls(10_000, 2_000, 60.0)


def reddit_budget() -> float:
    """The most Reddit requests per minute Thotto's settings accept (as high as a user can set
    it; read from the setting's own bound, so the bench follows if the bound changes)."""
    fields = msgspec.inspect.type_info(Settings).fields
    return next(f for f in fields if f.name == "reddit_requests_per_minute").type.le


async def run(kind: str, quick: bool, postgres_dsn: str | None) -> list[Result]:
    size = Size.pick(quick)
    with tempfile.TemporaryDirectory(prefix="thotto-popular-") as tmp, contextlib.ExitStack() as stack:
        dsn = stack.enter_context(fresh_postgres_database(postgres_dsn)) if kind == "postgres" else None
        async with child("sandbox", "--data-dir", f"{tmp}/sandbox", errors=Path(tmp) / "sandbox.err"
                         ) as (_, sandbox):
            reddit_url = f"http://127.0.0.1:{sandbox['port']}"
            progress(f"  popular: linking {size.accounts:,} accounts, scheduling {size.posts:,} posts")
            async with child("thotto", "--data-dir", f"{tmp}/thotto", "--reddit-url", reddit_url,
                             "--posts", str(size.posts), "--accounts", str(size.accounts),
                             "--window", str(size.window), *(["--dsn", dsn] if dsn else []),
                             errors=Path(tmp) / "thotto.err") as (thotto_pid, thotto):
                progress(f"  popular: {size.posts:,} posts due within {size.window:.0f} s, "
                         f"starting in {thotto['t0'] - time.time():.1f} s")
                watched = await watch(thotto_pid, thotto, reddit_url, size.posts)
        record = read_record(Path(tmp) / "sandbox")
    return judge(kind, size, watched, record)


@dataclass
class Watched:
    """What was seen while the posts were published."""

    meter: dict  # the sandbox's: {"peak", "answered": [[title, seconds], ...], "durations"}
    get_ms: list[float]
    rss_peak_mb: float
    cpu_seconds: float
    wall_seconds: float


async def watch(pid: int, thotto: dict, reddit_url: str, posts: int) -> Watched:
    """Offer cached GETs to Thotto's API and follow the sandbox until every post is answered."""
    get_ms: list[float] = []
    await trio.sleep(max(0.0, thotto["t0"] - time.time()))
    cpu_at_t0, t0 = cpu_seconds(pid), time.time()
    async with httpx.AsyncClient(base_url=reddit_url, timeout=30) as sandbox:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cached_gets, thotto, get_ms)
            with trio.fail_after(PUBLISH_TIMEOUT_SECONDS):
                while (await sandbox.get(METER_PATH, params={"summary": 1})).json()["answered"] < posts:
                    await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
        cpu, wall = cpu_seconds(pid) - cpu_at_t0, time.time() - t0
        meter = (await sandbox.get(METER_PATH)).json()
    return Watched(meter, get_ms, peak_rss_mb(pid), cpu, wall)


async def cached_gets(thotto: dict, samples_ms: list[float]) -> None:
    """Cached GETs at GET_RATE until cancelled, in short open-loop runs."""
    get = (f"GET /api/scheduled-posts HTTP/1.1\r\nHost: {thotto['host']}\r\n"
           f"Authorization: Bearer {thotto['token']}\r\n\r\n").encode()
    while True:
        latencies, _ = await offered_load(thotto["host"], thotto["port"], lambda i: get, GET_RATE,
                                          GET_CHUNK_SECONDS, GET_CONNECTIONS, 200)
        samples_ms += latencies


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user + system), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident set so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def judge(kind: str, size: Size, watched: Watched, record) -> list[Result]:
    """The results, after checking that the sandbox accepted every post exactly once."""
    check_exactly_once(record, size.posts)
    params = {"posts": size.posts, "accounts": size.accounts, "window_s": size.window,
              "reddit_latency_s": list(LATENCY), "workers": Settings().workers,
              "io_workers": Settings().io_workers,
              "reddit_requests_per_minute": reddit_budget()}
    late_ms = [seconds * 1000 for seconds in lateness_seconds(watched.meter["answered"])]
    results = [in_seconds(r) for r in latency_results("popular.lateness", late_ms, kind, params)]
    results.append(Result("popular.in_flight.peak", watched.meter["peak"], "submissions", kind, params))
    get_params = {"offered_rps": GET_RATE, "requests": len(watched.get_ms)}
    results += latency_results("popular.api.get_cached", watched.get_ms, kind, get_params)
    results.append(Result("popular.rss.peak", watched.rss_peak_mb, "MB", kind, {"posts": size.posts}))
    results.append(Result("popular.cpu.seconds", watched.cpu_seconds, "s", kind,
                          {"posts": size.posts, "wall_s": round(watched.wall_seconds, 1),
                           "share": round(watched.cpu_seconds / watched.wall_seconds, 3)}))
    return [report(r) for r in results]


def check_exactly_once(record, posts: int) -> None:
    """Every post of the minute is in the sandbox's durable record once, or the run is void."""
    copies = Counter(post.title for post in record if post.title.startswith("popular "))
    duplicated = sum(1 for n in copies.values() if n > 1)
    if len(copies) != posts or duplicated:
        raise RuntimeError(f"the sandbox accepted {len(copies)} of {posts} posts, "
                           f"{duplicated} of them more than once: the run is not valid")


def lateness_seconds(answered: list[tuple[str, float]]) -> list[float]:
    """Each post's first answer from the sandbox minus its scheduled time."""
    first: dict[str, float] = {}
    for title, at in answered:
        first.setdefault(title, at)
    return [at - due_of(title) for title, at in first.items() if title.startswith("popular ")]


def in_seconds(result: Result) -> Result:
    """A lateness result in ms (as latency_results makes them) in seconds, samples too."""
    samples = [ms / 1000 for ms in result.series["samples_ms"]]
    return Result(result.name, result.value / 1000, "s", result.store, result.params, {"samples_s": samples})


def due_of(title: str) -> float:
    """The scheduled time (Unix seconds) a post's title carries: ``popular <i> due <seconds>``."""
    return float(title.rsplit(" ", 1)[1])


@contextlib.asynccontextmanager
async def child(role: str, *args: str, errors: Path) -> AsyncIterator[tuple[int, dict]]:
    """``python -m bench.popular ROLE ...`` until its first line (JSON) is out: its pid and that
    line; stopped (SIGINT, then SIGKILL) and reaped on exit. Its stderr (Thotto logs a line per
    post) goes to the file ``errors``, whose tail is shown if it fails to start."""
    with open(errors, "ab") as stderr:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "bench.popular", role, *args], stdout=subprocess.PIPE, stderr=stderr)
    try:
        with trio.fail_after(START_TIMEOUT_SECONDS):
            line = await _first_line(process)
        if not line:
            raise RuntimeError(f"the {role} process exited before it was ready: "
                               f"{errors.read_text(errors='replace')[-2000:]}")
        yield process.pid, json.loads(line)
    finally:
        await stop_processes([process])


async def _first_line(process: trio.Process) -> str:
    received = b""
    while b"\n" not in received:
        chunk = await process.stdout.receive_some()
        if not chunk:
            return ""
        received += chunk
    return received.split(b"\n", 1)[0].decode()


# --- the sandbox process ------------------------------------------------------------------------


class SubmissionMeter:
    """ASGI middleware in front of the sandbox: how many ``/api/submit`` requests it is handling
    at once (and the most so far), and when each answered, by title. ``GET /_bench/meter``
    reports them (``?summary=1``: counts only)."""

    def __init__(self, app):
        self.app = app
        self.in_flight = 0
        self.peak = 0
        self.answered: list[tuple[str, float]] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == METER_PATH:
            return await self._report(scope, send)
        if scope["type"] != "http" or scope["path"] != "/api/submit":
            return await self.app(scope, receive, send)
        body = bytearray()
        status = 0

        async def receive_noting() -> dict:
            message = await receive()
            body.extend(message.get("body", b""))
            return message

        async def send_noting(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.app(scope, receive_noting, send_noting)
        finally:
            self.in_flight -= 1
        if status == 200:
            title = parse_qs(body.decode(errors="replace")).get("title", [""])[0]
            self.answered.append((title, time.time()))

    async def _report(self, scope, send) -> None:
        summary = b"summary" in scope.get("query_string", b"")
        document = {"peak": self.peak, "in_flight": self.in_flight,
                    "answered": len(self.answered) if summary else self.answered}
        body = json.dumps(document).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def serve_sandbox(data_dir: Path) -> None:
    """The sandbox with its submission meter on a free port: budget unlimited in practice,
    submissions answered after LATENCY; prints ``{"port"}`` and serves until SIGINT/SIGTERM."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    from thotto.reddit.sandbox import Faults, Sandbox, SandboxConfig

    sandbox = Sandbox(data_dir, config=SandboxConfig(rate_budget=1_000_000_000))
    sandbox.faults = Faults(latency=LATENCY[0], latency_max=LATENCY[1], latency_path="/api/submit")
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 1.0
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, SubmissionMeter(sandbox.app), config, mode="asgi"))
        print(json.dumps({"port": int(binds[0].rsplit(":", 1)[1])}), flush=True)


# --- the Thotto process -------------------------------------------------------------------------


async def serve_thotto(args: argparse.Namespace) -> None:
    """Thotto with its API on ``args.reddit_url``: the accounts linked, the posts scheduled; prints
    ``{"host", "port", "token", "t0"}`` and serves until SIGINT/SIGTERM."""
    from thotto.app import open_app

    settings = Settings(
        data_dir=str(args.data_dir), database_url=args.dsn, api_port=0, reddit_url=args.reddit_url,
        reddit_client_id=CLIENT_ID, reddit_client_secret=CLIENT_SECRET,
        reddit_requests_per_minute=reddit_budget(), shutdown_grace_seconds=1,
        api_requests_per_minute=1_000_000, api_burst=100_000)
    async with open_app(settings, serve_api=True) as app:
        token = await observer(app)
        accounts = await link_accounts(app, args.accounts)
        t0 = await schedule_minute(app, accounts, args.posts, args.window)
        async with trio.open_nursery() as waiting:
            await waiting.start(app.tree.stop_on_signals)
            host, port = app.tree.api.url.removeprefix("http://").rsplit(":", 1)
            print(json.dumps({"host": host, "port": int(port), "token": token, "t0": t0}), flush=True)
            await app.tree.wait_stopped()
            waiting.cancel_scope.cancel()


async def observer(app) -> str:
    """A pro user with a token and 20 posts a day ahead, whose list the GETs read (from the
    cache: nothing of theirs changes during the minute); the token."""
    from thotto.usecases import tokens
    from thotto.scheduler.records import NewPost, NewUser, PostContent, Tier
    from thotto.engine.jobs import utcnow

    user = await app.store.create_user(NewUser(name="observer", tier=Tier.PRO))
    _, token = await tokens.mint(app.store, app.services.cache, user.id, "bench")
    account = await link_with_password(app.scheduler, user.id, "observer_acct", "bench-password")
    due = utcnow() + timedelta(days=1)
    await app.scheduler.schedule_posts([
        NewPost(user_id=user.id, account_id=account.id, scheduled_for=due + timedelta(minutes=i),
                content=PostContent(subreddit="test", title=f"listed post {i}", text="body"))
        for i in range(20)])
    return token


async def link_accounts(app, count: int) -> list[tuple[int, int]]:
    """``count`` accounts, ACCOUNTS_PER_USER to a pro user: (user id, account id) of each."""
    from thotto.scheduler.records import NewUser, Tier

    linked = []
    for first in range(0, count, ACCOUNTS_PER_USER):
        user = await app.store.create_user(NewUser(name=f"creator_{first // ACCOUNTS_PER_USER}",
                                                      tier=Tier.PRO))
        async with trio.open_nursery() as nursery:  # the links of one user wait on Reddit together
            for i in range(first, min(count, first + ACCOUNTS_PER_USER)):
                nursery.start_soon(_link, app, user.id, f"creator_acct_{i}", linked)
    return linked


async def _link(app, user_id: int, name: str, linked: list) -> None:
    account = await link_with_password(app.scheduler, user_id, name, "bench-password")
    linked.append((user_id, account.id))


async def schedule_minute(app, accounts: list[tuple[int, int]], posts: int, window: float) -> float:
    """``posts`` posts over the accounts in turn, due at random times within ``window`` seconds
    from a start far enough ahead that all are stored before the first falls due; that start."""
    from thotto.scheduler.records import NewPost, PostContent

    # Scheduling runs at a few thousand posts/s on SQLite, but at a few hundred on a loaded
    # Postgres (a 13 s lead for 10,000 posts was too short there): the lead assumes the latter.
    lead = 5.0 + posts / 250
    t0 = time.time() + lead
    batch: list[NewPost] = []
    for i in range(posts):
        due = t0 + random.uniform(0, window)
        user_id, account_id = accounts[i % len(accounts)]
        batch.append(NewPost(user_id=user_id, account_id=account_id,
                             scheduled_for=datetime.fromtimestamp(due, timezone.utc),
                             content=PostContent(subreddit="test", title=f"popular {i} due {due:.6f}",
                                                 text="body")))
        if len(batch) == 500 or i == posts - 1:
            await app.scheduler.schedule_posts(batch)
            batch = []
    if time.time() >= t0:
        raise RuntimeError(f"scheduling {posts} posts took more than the {lead:.0f} s lead; "
                           "the first would be late before the bench began")
    return t0


def child_main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.popular")
    roles = parser.add_subparsers(dest="role", required=True)
    sandbox = roles.add_parser("sandbox", help="the metered sandbox")
    sandbox.add_argument("--data-dir", type=Path, required=True)
    thotto = roles.add_parser("thotto", help="Thotto with the accounts and posts")
    thotto.add_argument("--data-dir", type=Path, required=True)
    thotto.add_argument("--reddit-url", required=True)
    thotto.add_argument("--dsn")
    thotto.add_argument("--posts", type=int, required=True)
    thotto.add_argument("--accounts", type=int, required=True)
    thotto.add_argument("--window", type=float, required=True)
    args = parser.parse_args()
    if args.role == "sandbox":
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        with contextlib.suppress(KeyboardInterrupt):
            trio.run(serve_sandbox, args.data_dir)
    else:
        trio.run(serve_thotto, args)


if __name__ == "__main__":
    child_main()
