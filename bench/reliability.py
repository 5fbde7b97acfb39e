"""Reliability: posts published exactly once through a faulty Reddit.

``reliability.exactly_once`` is the share (%) of scheduled posts that the Reddit sandbox accepted
exactly once, with the store's Reddit id matching the sandbox's record. 10k posts (quick: 300) go
through the sandbox (``thotto sandbox``, its own process) while it answers 5% of submissions with a
503 and 1% with a ``RATELIMIT`` error. The judge is the sandbox's durable record (``posts.jsonl``,
fsynced before each reply) against the store.

Why: a post scheduler's first promise is "your post goes out, once". Retries after a 5xx must not
double-post; rate limits must defer, not fail.

Settings that differ from the defaults, and why: the Reddit request budget is the maximum the
settings allow (6,000/min) so 10k posts take minutes, not hours; reconciliation settles after 1 s
(default 60 s: the sandbox's listing is consistent at once); breakers reopen after 1 s (default
30 s, which three 503s in a row trip now and then); RATELIMIT asks for a 1 s pause. Posts are
scheduled 80 per second, under the budget, over 10 linked accounts of one pro user.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import msgspec
import trio

from bench.common import Result, free_port, progress, report, stop_processes
from bench.databases import fresh_postgres_database
from thotto.app import App, open_app
from thotto.config import Settings
from thotto.engine.jobs import JobState, utcnow
from thotto.reddit.sandbox import POSTS_FILE, PostRecord
from thotto.scheduler.records import NewPost, NewUser, PostContent, Tier
from thotto.services import REDDIT_BREAKER
from thotto.store.base import POST_QUEUE
from thotto.usecases.accounts import link_with_password

TARGETS = {"reliability.exactly_once": (">=", 100.0)}
STORES = None  # the stores chosen with --store
ACCOUNTS = 10
POSTS_PER_SECOND = 80
SERVER_ERROR_RATE = 0.05
RATELIMIT_SHARE = 0.01
CLIENT_ID, CLIENT_SECRET = "thotto-bench-app", "bench-secret"
SETTLE_TIMEOUT_SECONDS = 900
SCHEDULE_BATCH = 500


def post_count(quick: bool) -> int:
    return 300 if quick else 10_000


async def run(kind: str, quick: bool, postgres_dsn: str | None) -> list[Result]:
    count = post_count(quick)
    with tempfile.TemporaryDirectory(prefix="thotto-rel-") as tmp, contextlib.ExitStack() as stack:
        dsn = stack.enter_context(fresh_postgres_database(postgres_dsn)) if kind == "postgres" else None
        sandbox_dir = Path(tmp) / "sandbox"
        async with sandbox_process(sandbox_dir) as url, \
                publishing_engine(url, Path(tmp) / "thotto", dsn) as (app, account_ids):
            progress(f"  reliability: {count:,} posts, {SERVER_ERROR_RATE:.0%} 503s and "
                     f"{RATELIMIT_SHARE:.0%} RATELIMIT from the sandbox")
            post_ids = await schedule(app, account_ids, count)
            async with httpx.AsyncClient(base_url=url, timeout=10) as control:
                await control.post("/_sandbox/faults", json=faults(ratelimit=False))
                ratelimits = await inject_until_settled(app, control, count)
            share, details = await judge(app, post_ids, read_record(sandbox_dir))
    details.update(posts=count, accounts=ACCOUNTS, server_error_rate=SERVER_ERROR_RATE,
                   ratelimits_served=ratelimits)
    return [report(Result("reliability.exactly_once", share, "%", kind, details))]


def faults(*, ratelimit: bool) -> dict:
    """The sandbox's fault set: 503 on a share of submissions, and one RATELIMIT if asked."""
    chosen: dict = {"errors": [{"status": 503, "rate": SERVER_ERROR_RATE, "path": "/api/submit"}]}
    if ratelimit:
        chosen["ratelimit"] = {"count": 1, "seconds": 1}
    return chosen


@contextlib.asynccontextmanager
async def sandbox_process(data_dir: Path) -> AsyncIterator[str]:
    """``thotto sandbox`` in its own process on a free port (so its CPU is not the engine's);
    stopped and reaped on exit."""
    port = free_port()
    command = [sys.executable, "-c", "import sys, thotto.cli; sys.exit(thotto.cli.main(sys.argv[1:]))",
               "sandbox", "--port", str(port), "--data-dir", str(data_dir), "--rate-budget", "100000000"]
    process = await trio.lowlevel.open_process(command, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        with trio.fail_after(30):
            while True:
                try:
                    async with httpx.AsyncClient(base_url=url, timeout=1) as http:
                        (await http.get("/_sandbox/faults")).raise_for_status()
                    break
                except httpx.TransportError:
                    if process.returncode is not None:
                        raise RuntimeError("the sandbox process exited at start") from None
                    await trio.sleep(0.1)
        yield url
    finally:
        await stop_processes([process])


@contextlib.asynccontextmanager
async def publishing_engine(reddit_url: str, data_dir: Path, dsn: str | None
                            ) -> AsyncIterator[tuple[App, list[tuple[int, int]]]]:
    """An engine publishing to the sandbox, and (user id, account id) of each linked account."""
    settings = Settings(data_dir=str(data_dir), database_url=dsn, reddit_url=reddit_url,
                        reddit_client_id=CLIENT_ID, reddit_client_secret=CLIENT_SECRET,
                        reddit_requests_per_minute=6000, reddit_reconcile_settle_seconds=1,
                        lease_seconds=10, sweep_interval_seconds=0.5, shutdown_grace_seconds=1)
    async with open_app(settings) as app:
        app.services.breakers.configure("reddit.*", REDDIT_BREAKER.with_(open_seconds=1))
        user = await app.store.create_user(NewUser(name="bench_creator", tier=Tier.PRO))
        accounts = [await link_with_password(app.scheduler, user.id, f"bench_acct_{i}", "bench-password")
                    for i in range(ACCOUNTS)]
        yield app, [(user.id, account.id) for account in accounts]


async def schedule(app: App, accounts: list[tuple[int, int]], count: int) -> list[int]:
    """``count`` posts with unique titles, due ``POSTS_PER_SECOND`` per second from 2 s ahead."""
    start = utcnow() + timedelta(seconds=2)
    post_ids = []
    for first in range(0, count, SCHEDULE_BATCH):
        batch = []
        for i in range(first, min(count, first + SCHEDULE_BATCH)):
            user_id, account_id = accounts[i % len(accounts)]
            batch.append(NewPost(user_id=user_id, account_id=account_id,
                                 content=PostContent(subreddit="test", title=f"bench post {i}", text="body"),
                                 scheduled_for=start + timedelta(seconds=i / POSTS_PER_SECOND)))
        post_ids += [post.id for post in await app.scheduler.schedule_posts(batch)]
    return post_ids


async def inject_until_settled(app: App, control: httpx.AsyncClient, count: int) -> int:
    """Arm one RATELIMIT each time another 1/RATELIMIT_SHARE posts have settled, until every
    post job is completed or dead; how many RATELIMITs the sandbox served."""
    every = round(1 / RATELIMIT_SHARE)
    armed = 0
    with trio.fail_after(SETTLE_TIMEOUT_SECONDS):
        while (settled := await settled_posts(app)) < count:
            if settled >= (armed + 1) * every - every // 2 and armed < count // every:
                await control.post("/_sandbox/faults", json=faults(ratelimit=True))
                armed += 1
            await trio.sleep(0.2)
    left = (await control.get("/_sandbox/faults")).json().get("ratelimit") or {}
    return armed - int(left.get("count") or 0)


async def settled_posts(app: App) -> int:
    counts = {(c.queue, c.state): c.count for c in await app.store.counts()}
    return counts.get((POST_QUEUE, JobState.COMPLETED), 0) + counts.get((POST_QUEUE, JobState.DEAD), 0)


def read_record(data_dir: Path) -> list[PostRecord]:
    """Every post the sandbox accepted, from its durable file."""
    decoder = msgspec.json.Decoder(PostRecord)
    lines = (data_dir / POSTS_FILE).read_bytes().splitlines() if (data_dir / POSTS_FILE).exists() else []
    return [decoder.decode(line) for line in lines if line.strip()]


async def judge(app: App, post_ids: list[int], accepted: list[PostRecord]) -> tuple[float, dict]:
    """Share (%) of posts accepted exactly once by the sandbox with the store's Reddit id."""
    by_title = Counter(record.title for record in accepted)
    id_of_title = {record.title: record.id for record in accepted}
    exactly_once = duplicated = missing = mismatched = retried = 0
    for post_id in post_ids:
        post = await app.store.get_post(post_id)
        retried += (await app.store.get_job(post.job_id)).attempt > 1  # evidence the 503s landed
        copies = by_title[post.content.title]
        if copies == 0:
            missing += 1
        elif copies > 1:
            duplicated += 1
        elif post.reddit_id != id_of_title[post.content.title]:
            mismatched += 1
        else:
            exactly_once += 1
    details = {"published_once": exactly_once, "duplicated": duplicated, "missing": missing,
               "store_sandbox_mismatch": mismatched, "posts_retried": retried}
    return 100 * exactly_once / len(post_ids), details
