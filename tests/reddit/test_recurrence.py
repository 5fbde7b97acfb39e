"""Recurring posts through the engine and the sandbox: each occurrence publishes at its time,
the series stops after ``count``, and the next occurrence is scheduled exactly once even when
the process crashes right after a publication is recorded.

The series test runs in virtual time (days pass instantly): the sandbox and the Reddit client
read the same virtual clock, and the client's HTTP exchanges count as work in flight, so the
test clock never jumps while a request is on the wire (see tests/support/clock.py).
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import trio

import thotto.services
from tests.reddit.conftest import CLIENT_ID, CLIENT_SECRET, SandboxServer
from tests.reddit.test_publishing import publishing_engine, wait_for_status
from tests.support.clock import thread_aware_mock_clock
from thotto.app import open_app
from thotto.config import Settings
from thotto.engine.clock import OffTrioWork, TrioClock
from thotto.engine.errors import ValidationError
from thotto.engine.jobs import JobState, utcnow
from thotto.reddit.client import RedditClient
from thotto.reddit.sandbox import SandboxConfig, serve_sandbox
from thotto.usecases.accounts import link_with_password
from thotto.scheduler.records import NewPost
from thotto.scheduler.records import NewUser
from thotto.scheduler.records import PostContent
from thotto.scheduler.records import PostStatus
from thotto.scheduler.records import Recurrence
from thotto.scheduler.records import Tier

EPOCH = datetime(2026, 3, 27, 6, 0, tzinfo=timezone.utc)  # Berlin's clocks go forward on the 29th


@pytest.fixture
def mock_clock():
    """pytest-trio uses a clock only when a test names it; the series test does."""
    return thread_aware_mock_clock()


class InFlightTransport(httpx.AsyncBaseTransport):
    """httpx's transport, with each exchange (body included) counted as off-Trio work, so the
    virtual clock waits for the sandbox's answer instead of jumping past the client's timeout."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        OffTrioWork.pending += 1
        try:
            response = await self._inner.handle_async_request(request)
            try:
                body = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
            return httpx.Response(response.status_code, headers=response.headers, content=body,
                                  extensions=response.extensions)
        finally:
            OffTrioWork.pending -= 1

    async def aclose(self) -> None:
        await self._inner.aclose()


class VirtualSandbox(SandboxServer):
    def __init__(self, nursery, data_dir, clock: TrioClock):
        super().__init__(nursery, data_dir, SandboxConfig(rate_budget=100_000))
        self.clock = clock

    async def _run(self, port, *, task_status=trio.TASK_STATUS_IGNORED):
        try:
            with trio.CancelScope() as self._scope:
                await serve_sandbox("127.0.0.1", port, self.data_dir, config=self.config,
                                    clock=lambda: self.clock.now().timestamp(), grace_seconds=0.5,
                                    task_status=task_status)
        finally:
            self._stopped.set()

    async def control(self, method, path, json=None):
        OffTrioWork.pending += 1  # the control client's exchange is work in flight too
        try:
            return await super().control(method, path, json=json)
        finally:
            OffTrioWork.pending -= 1


@contextlib.asynccontextmanager
async def virtual_engine(nursery, tmp_path, monkeypatch):
    clock = TrioClock(EPOCH)
    sandbox = VirtualSandbox(nursery, tmp_path / "sandbox", clock)
    await sandbox.start()
    monkeypatch.setattr(thotto.services, "RedditClient", lambda config: RedditClient(
        config, transport=InFlightTransport(), wall_clock=lambda: clock.now().timestamp()))
    settings = Settings(
        data_dir=str(tmp_path / "thotto"), reddit_url=sandbox.url, reddit_client_id=CLIENT_ID,
        reddit_client_secret=CLIENT_SECRET, reddit_requests_per_minute=6000,
        shutdown_grace_seconds=1, lease_seconds=600, sweep_interval_seconds=600,
        monitor_interval_seconds=600,
    )
    async with open_app(settings, clock=clock) as app:
        user = await app.store.create_user(NewUser(name="creator", tier=Tier.PRO))
        account = await link_with_password(app.scheduler, user.id, "creator_acct", "secret-password")
        yield app, user, account, sandbox, clock


def recurring(user, account, when, recurrence: Recurrence, title="Daily thread") -> NewPost:
    return NewPost(user_id=user.id, account_id=account.id, scheduled_for=when, recurrence=recurrence,
                   content=PostContent(subreddit="test", title=title, text="body"))


async def test_a_daily_post_with_count_3_publishes_three_times_then_stops(
        nursery, tmp_path, monkeypatch, mock_clock):
    async with virtual_engine(nursery, tmp_path, monkeypatch) as (app, user, account, sandbox, clock):
        first_at = datetime(2026, 3, 28, 8, 0, tzinfo=timezone.utc)  # 09:00 in Berlin (CET)
        daily = Recurrence(frequency="daily", timezone="Europe/Berlin", count=3)
        (first,) = await app.scheduler.schedule_posts([recurring(user, account, first_at, daily)])
        # Past the third occurrence: the series must have stopped there (no fourth scheduled).
        await trio.sleep((first_at - clock.now()).total_seconds() + 2.5 * 86400)
        posts = (await app.store.list_posts(user.id)).posts
        records = await sandbox.posts()
    # 09:00 Berlin each day: 08:00 UTC before the change to summer time, 07:00 UTC after.
    expected = [first_at, datetime(2026, 3, 29, 7, 0, tzinfo=timezone.utc),
                datetime(2026, 3, 30, 7, 0, tzinfo=timezone.utc)]
    assert [post.scheduled_for for post in posts] == expected
    assert [post.status for post in posts] == [PostStatus.PUBLISHED] * 3
    assert [post.recurrence.count for post in posts] == [3, 2, 1]
    assert len(records) == 3 and sorted(r["id"] for r in records) == sorted(p.reddit_id for p in posts)
    for record, when in zip(sorted(records, key=lambda r: r["created_utc"]), expected):
        assert when.timestamp() <= record["created_utc"] < when.timestamp() + 60


async def test_an_unknown_time_zone_is_refused_at_scheduling(sandbox, tmp_path):
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        bad = Recurrence(frequency="weekly", timezone="Europe/Atlantis")
        with pytest.raises(ValidationError) as refused:
            await app.scheduler.schedule_posts([recurring(user, account, utcnow() + timedelta(hours=1), bad)])
        assert refused.value.field == "recurrence.timezone"
        assert (await app.store.list_posts(user.id)).posts == []


async def follow_ups(app, user) -> list:
    return [post for post in (await app.store.list_posts(user.id)).posts
            if post.status is PostStatus.SCHEDULED]


async def job_finished(app, job_id: int, timeout: float = 15.0) -> None:
    with trio.fail_after(timeout):
        while (await app.store.get_job(job_id)).state is not JobState.COMPLETED:
            await trio.sleep(0.05)


@pytest.mark.parametrize("crash", ["before", "after"])
async def test_a_crash_around_scheduling_the_next_occurrence_makes_exactly_one(
        sandbox, tmp_path, crash):
    """The process dies right after recording the publication, before or after the next
    occurrence was stored: the job runs again (the early-return path) and one next exists."""
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        publisher = app.scheduler.publisher
        real = publisher.on_published
        calls = []

        async def crash_once(post):
            calls.append(post.id)
            if len(calls) == 1:
                if crash == "after":
                    await real(post)
                raise RuntimeError("process died right after recording the publication")
            await real(post)

        publisher.on_published = crash_once
        daily = Recurrence(frequency="daily", count=5)
        (post,) = await app.scheduler.schedule_posts(
            [recurring(user, account, utcnow() + timedelta(seconds=1), daily)])
        await wait_for_status(app, post.id, PostStatus.PUBLISHED)
        await job_finished(app, post.job_id)  # published once recorded; the follow-up comes after
        (nxt,) = await follow_ups(app, user)
        # And a third run of the after-publication step (another process, say) changes nothing.
        await real(await app.store.get_post(post.id))
        again = await follow_ups(app, user)
    assert len(calls) == 2 and [p.id for p in again] == [nxt.id]
    assert nxt.scheduled_for == post.scheduled_for + timedelta(days=1)
    assert nxt.recurrence.count == 4
    assert len(await sandbox.posts()) == 1


async def test_a_reconciled_publication_schedules_the_next_occurrence_once(sandbox, tmp_path):
    async with publishing_engine(sandbox, tmp_path) as (app, user, account):
        await sandbox.faults(drop_after_accept=1)  # Reddit accepts; the reply is lost
        weekly = Recurrence(frequency="weekly")
        (post,) = await app.scheduler.schedule_posts(
            [recurring(user, account, utcnow() + timedelta(seconds=1), weekly)])
        await wait_for_status(app, post.id, PostStatus.PUBLISHED)
        await job_finished(app, post.job_id)
        scheduled = await follow_ups(app, user)
        async with trio.open_nursery() as racing:  # two more runs at once: still one
            for _ in range(2):
                racing.start_soon(app.scheduler._after_publication, await app.store.get_post(post.id))
        assert [p.id for p in await follow_ups(app, user)] == [p.id for p in scheduled]
    assert len(scheduled) == 1 and scheduled[0].scheduled_for == post.scheduled_for + timedelta(weeks=1)
    assert len(await sandbox.posts()) == 1
