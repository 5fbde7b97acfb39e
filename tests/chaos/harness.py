"""What the chaos scenarios run and judge with: real processes, a real sandbox, and the judge.

* :class:`SandboxProcess` — the sandbox (what ``thotto sandbox`` serves) as a child process on a free loopback port; its
  durable record of accepted posts (``posts.jsonl``, fsynced before each reply) is the judge.
* :class:`ThottoProcess` — a Thotto process (``tests.support.chaos_process``: the engine's whole
  tree, configured from ``THOTTO_*`` variables as ``thotto serve`` is) with its log in a file.
* :class:`RedisServer` — a private ``redis-server`` a scenario may kill and restart.
* :class:`Chaos` — one scenario's world: settings shared by the test and its Thotto processes,
  seeding posts through the library, waiting with deadlines, and :meth:`Chaos.judge`.

Every child process is killed and reaped by the fixture that made it (see conftest.py), also when
the test fails. Only loopback addresses are used.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio

from thotto.app import open_app
from thotto.config import Settings, load_settings
from thotto.engine.jobs import utcnow
from thotto.scheduler.records import NewPost, NewUser, Post, PostContent, PostStatus, Tier
from thotto.store import open_store
from thotto.usecases.accounts import link_with_password

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID = "thotto-chaos-app"
CLIENT_SECRET = "chaos-secret"
ACCOUNT = "chaos_acct"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: ours without THOTTO_* settings, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("THOTTO_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _reap(process: subprocess.Popen | None) -> None:
    """SIGKILL (if still running) and wait: no child outlives its test."""
    if process is None:
        return
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a zombie we cannot do more about
        pass


async def _wait_for_line(process: subprocess.Popen, expected: str, timeout: float, what: str,
                         log: Path | None = None) -> None:
    """Read the child's stdout until ``expected``; fail clearly on timeout or early exit."""

    def read() -> str:
        assert process.stdout is not None
        while True:
            line = process.stdout.readline()
            if not line or line.strip() == expected:
                return line.strip()

    try:
        with trio.fail_after(timeout):
            line = await trio.to_thread.run_sync(read, abandon_on_cancel=True)
    except trio.TooSlowError:
        process.kill()
        raise AssertionError(f"{what} did not print {expected!r} within {timeout:g} s{_tail(log)}") from None
    if line != expected:
        process.wait(timeout=10)
        raise AssertionError(f"{what} exited ({process.returncode}) before printing {expected!r}{_tail(log)}")


def _tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- last lines of " + str(log) + " ---\n" + "\n".join(text)


# --- the sandbox -----------------------------------------------------------------------------


class SandboxProcess:
    """The sandbox in a child process (tests/support/sandbox_process.py). The record survives
    its restarts."""

    def __init__(self, data_dir: Path, log: Path):
        self.data_dir = data_dir
        self.log = log
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.sandbox_process", "--port", str(self.port),
                 "--data-dir", str(self.data_dir)],
                cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL, stderr=log)
        with trio.fail_after(timeout):
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(f"the sandbox exited ({self.process.returncode}){_tail(self.log)}")
                try:
                    await self.control("GET", "/_sandbox/faults")
                    return
                except httpx.HTTPError:
                    await trio.sleep(0.05)

    def stop(self) -> None:
        _reap(self.process)
        self.process = None

    async def control(self, method: str, path: str, json: Any = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as http:
            response = await http.request(method, path, json=json)
        response.raise_for_status()
        return response

    async def faults(self, **faults: Any) -> None:
        """Replace the fault set (``thotto.reddit.sandbox.Faults``); no arguments clears it."""
        await self.control("POST", "/_sandbox/faults", json=faults)

    def record(self) -> list[dict]:
        """The durable record of accepted posts, read from the file as a crash would leave it."""
        path = self.data_dir / "posts.jsonl"
        if not path.exists():
            return []
        posts = []
        for line in path.read_bytes().splitlines():
            if line.strip():
                try:
                    posts.append(msgspec.json.decode(line))
                except msgspec.DecodeError:
                    break  # a torn last line was never acknowledged
        return posts


# --- Redis -----------------------------------------------------------------------------------


class RedisServer:
    """A private ``redis-server`` on a fixed free port: ``kill()`` it, ``start()`` it again."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        _reap(self.process)
        self.process = None


# --- Thotto ----------------------------------------------------------------------------------


class ThottoProcess:
    """One Thotto process (``tests.support.chaos_process``) with its settings as ``THOTTO_*``."""

    def __init__(self, name: str, env: dict[str, str], log: Path, args: list[str]):
        self.name = name
        self.env = env
        self.log = log
        self.args = args
        self.process: subprocess.Popen | None = None
        self.starts = 0

    async def start(self, timeout: float = 60) -> None:
        assert not self.alive, f"{self.name} is already running"
        with open(self.log, "ab") as log:
            log.write(f"=== start {self.starts + 1} ===\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.chaos_process", *self.args],
                cwd=ROOT, env=child_env(self.env), stdout=subprocess.PIPE, stderr=log, text=True)
        self.starts += 1
        await _wait_for_line(self.process, "ready", timeout, self.name, self.log)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        assert self.alive, f"{self.name} is not running{_tail(self.log)}"
        self.process.send_signal(signum)

    async def wait(self, timeout: float) -> int:
        """Wait for the process to exit; its exit code."""
        assert self.process is not None
        process = self.process
        try:
            with trio.fail_after(timeout):
                while process.poll() is None:
                    await trio.sleep(0.05)
        except trio.TooSlowError:
            raise AssertionError(f"{self.name} did not exit within {timeout:g} s{_tail(self.log)}") from None
        return process.returncode

    def reap(self) -> None:
        _reap(self.process)

    def tail(self) -> str:
        return _tail(self.log)


# --- one scenario's world ------------------------------------------------------------------------


@dataclass
class Seeded:
    """Posts a scenario scheduled: their store records at scheduling time, by title."""

    posts: dict[str, Post] = field(default_factory=dict)

    def add(self, posts: list[Post]) -> None:
        for post in posts:
            self.posts[post.content.title] = post


class Chaos:
    """One scenario: settings shared by the test and its Thotto processes, seeding, waiting and
    judging. ``database_url`` is a Postgres DSN or a SQLite path."""

    def __init__(self, tmp_path: Path, sandbox: SandboxProcess, database_url: str, **settings: Any):
        self.tmp_path = tmp_path
        self.sandbox = sandbox
        self.data_dir = tmp_path / "thotto"
        self.data_dir.mkdir(exist_ok=True)
        self.database_url = database_url
        self.values: dict[str, Any] = {
            "data_dir": str(self.data_dir), "database_url": database_url,
            "reddit_url": sandbox.url, "reddit_client_id": CLIENT_ID,
            "reddit_client_secret": CLIENT_SECRET, "reddit_requests_per_minute": 6000,
            "reddit_timeout_seconds": 10, "workers": 8, "lease_seconds": 3,
            "sweep_interval_seconds": 0.5, "shutdown_grace_seconds": 1,
            "reddit_reconcile_settle_seconds": 2, "log_level": "INFO",
        }
        self.values.update(settings)
        self.processes: list[ThottoProcess] = []
        self.seeded = Seeded()
        self.user_id: int | None = None
        self.account_id: int | None = None

    @property
    def postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://"))

    def env(self, **overrides: Any) -> dict[str, str]:
        values = {**self.values, **overrides}
        return {f"THOTTO_{key.upper()}": str(value) for key, value in values.items() if value is not None}

    def settings(self, **overrides: Any) -> Settings:
        return load_settings(environ=self.env(**overrides))

    def thotto(self, name: str = "thotto", *, breaker_open_seconds: float | None = 1.0,
               clock_offset_seconds: float = 0.0, jump_seconds: float = 3600.0,
               serve_api: bool = False, **overrides: Any) -> ThottoProcess:
        """A Thotto process (not started) on this world's settings plus ``overrides``."""
        args = [] if breaker_open_seconds is None else ["--breaker-open-seconds", str(breaker_open_seconds)]
        args += ["--clock-offset-seconds", str(clock_offset_seconds), "--jump-seconds", str(jump_seconds)]
        if serve_api:
            args.append("--serve-api")
        process = ThottoProcess(name, self.env(**overrides), self.tmp_path / f"{name}.log", args)
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "".join(process.tail() for process in self.processes)

    # --- seeding through the library --------------------------------------------------------

    @contextlib.asynccontextmanager
    async def app(self, clock=None, **overrides: Any):
        """Thotto in this test process, running no workers (to schedule and to read)."""
        async with open_app(self.settings(**overrides), clock=clock, run_workers=False) as app:
            yield app

    async def link(self, app) -> None:
        """Create the scenario's user and link its Reddit account through the sandbox."""
        if self.user_id is None:
            user = await app.store.create_user(NewUser(name="chaos", tier=Tier.PRO))
            account = await link_with_password(app.scheduler, user.id, ACCOUNT, "chaos-password")
            self.user_id, self.account_id = user.id, account.id

    async def schedule(self, app, titles: list[str], at: Callable[[int], datetime] | datetime,
                       batch: int = 500) -> list[Post]:
        """Schedule one self post per title on r/test at ``at`` (or ``at(i)``)."""
        await self.link(app)
        scheduled: list[Post] = []
        for start in range(0, len(titles), batch):
            chunk = titles[start:start + batch]
            new = [NewPost(user_id=self.user_id, account_id=self.account_id,
                           content=PostContent(subreddit="test", title=title, text="chaos"),
                           scheduled_for=at(start + i) if callable(at) else at)
                   for i, title in enumerate(chunk)]
            scheduled += await app.scheduler.schedule_posts(new)
        self.seeded.add(scheduled)
        return scheduled

    async def seed(self, titles: list[str], at, **overrides: Any) -> list[Post]:
        async with self.app(**overrides) as app:
            return await self.schedule(app, titles, at)

    # --- waiting ----------------------------------------------------------------------------

    async def wait_for(self, what: str, condition: Callable[[], Awaitable[bool]] | Callable[[], bool],
                       timeout: float, poll: float = 0.1) -> None:
        """Poll ``condition`` until true; fail naming ``what``, with the processes' logs."""
        try:
            with trio.fail_after(timeout):
                while True:
                    result = condition()
                    if not isinstance(result, bool):
                        result = await result
                    if result:
                        return
                    await trio.sleep(poll)
        except trio.TooSlowError:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; "
                                 f"sandbox has {len(self.sandbox.record())} posts{self.logs()}") from None

    async def wait_for_record(self, count: int, timeout: float) -> None:
        await self.wait_for(f"{count} posts in the sandbox's record",
                            lambda: len(self.sandbox.record()) >= count, timeout)

    async def finished_jobs(self) -> int:
        """How many publishing jobs are finished (completed or dead), read while Thotto runs:
        over Postgres with a short-lived store; over SQLite read-only, beside its writer."""
        if self.postgres:
            async with open_store(self.database_url) as store:
                counts = await store.counts()
            return sum(c.count for c in counts if c.queue == "posts" and c.state.value in ("completed", "dead"))
        with contextlib.closing(sqlite3.connect(f"file:{self.database_url}?mode=ro", uri=True, timeout=5)) as db:
            (count,) = db.execute(
                "SELECT count(*) FROM jobs WHERE queue = 'posts' AND state IN ('completed', 'dead')").fetchone()
        return count

    async def wait_until_all_finished(self, timeout: float) -> None:
        expected = len(self.seeded.posts)
        await self.wait_for_record(expected, timeout)
        await self.wait_for(f"all {expected} publishing jobs finished in the store",
                            lambda: self._finished_is(expected), timeout)

    async def _finished_is(self, expected: int) -> bool:
        try:
            return await self.finished_jobs() >= expected
        except Exception:  # the store may be restarting; try again
            return False

    # --- the judge --------------------------------------------------------------------------

    async def judge(self, *, on_time_within: float | None = None, allow_early: bool = False) -> "Verdict":
        """Every seeded post published exactly once, by the sandbox's record AND the store:

        * the record holds exactly one post per seeded title and nothing else;
        * the store has each post ``published`` with the record's id and permalink;
        * no post went out before its time (unless ``allow_early``: Thotto's clock was made to
          run ahead of Reddit's), and with ``on_time_within`` none later than that.
        """
        record = self.sandbox.record()
        by_title = collections.Counter(post["title"] for post in record)
        twice = {title: n for title, n in by_title.items() if n > 1}
        assert not twice, f"published more than once: {twice}"
        unexpected = set(by_title) - set(self.seeded.posts)
        assert not unexpected, f"posts nobody scheduled: {sorted(unexpected)[:10]}"
        missing = sorted(set(self.seeded.posts) - set(by_title))
        assert not missing, f"{len(missing)} posts never published, e.g. {missing[:10]}{self.logs()}"
        records = {post["title"]: post for post in record}
        async with open_store(self.database_url) as store:
            stored = {title: await store.get_post(post.id) for title, post in self.seeded.posts.items()}
            jobs = {title: await store.get_job(post.job_id) for title, post in stored.items()}
        wrong = {title: post.status.value for title, post in stored.items()
                 if post.status is not PostStatus.PUBLISHED}
        assert not wrong, f"{len(wrong)} posts not published in the store: {dict(list(wrong.items())[:10])}"
        for title, post in stored.items():
            accepted = records[title]
            assert post.reddit_id == accepted["id"], (title, post.reddit_id, accepted["id"])
            assert post.reddit_url.endswith(accepted["permalink"]), (title, post.reddit_url)
            assert accepted["author"] == ACCOUNT
            # created_utc is whole seconds (truncated), as on Reddit
            if not allow_early:
                assert accepted["created_utc"] >= int(post.scheduled_for.timestamp()), f"{title} went out early"
            if on_time_within is not None:
                late = accepted["created_utc"] - post.scheduled_for.timestamp()
                assert late <= on_time_within, f"{title} went out {late:.1f} s after its time"
        return Verdict(record, stored, jobs)


@dataclass
class Verdict:
    record: list[dict]
    posts: dict[str, Post]
    jobs: dict[str, Any]


def titles(prefix: str, count: int) -> list[str]:
    return [f"{prefix} {i:04d}" for i in range(count)]


def soon(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


def spread(start_in: float, over: float, count: int) -> Callable[[int], datetime]:
    """Times for ``count`` posts, evenly over ``over`` seconds from ``start_in`` seconds ahead."""
    base = utcnow() + timedelta(seconds=start_in)
    step = over / max(1, count - 1)
    return lambda i: base + timedelta(seconds=i * step)
