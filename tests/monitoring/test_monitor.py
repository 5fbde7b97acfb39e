"""The queue monitor under virtual time: snapshots, thresholds raising and clearing alerts,
webhooks announced for alerts, failed posts and accounts needing re-linking (read here from the
store, where each is a delivery job; real HTTP deliveries are in test_webhooks.py)."""

from __future__ import annotations

import json

import msgspec
import trio

from thotto.engine.errors import PermanentJobError
from thotto.engine.store.base import JobSearch
from thotto.scheduler.records import NewAccount, NewPost, NewUser, PostContent
from thotto.scheduler.webhooks import WEBHOOK_QUEUE, Delivery
from thotto.store.base import POST_JOB_KIND

INTERVAL = 10.0
HOOK = "http://127.0.0.1:9/unused"  # nothing listens: deliveries are read from the store


async def announced(app) -> list[dict]:
    """The bodies of every webhook announced so far, oldest first."""
    page = await app.store.search_jobs(JobSearch(queue=WEBHOOK_QUEUE, limit=500))
    deliveries = [msgspec.json.decode(record.job.payload, type=Delivery) for record in page.jobs]
    assert all(delivery.url == HOOK for delivery in deliveries)
    return [json.loads(bytes(delivery.body)) for delivery in reversed(deliveries)]


async def next_snapshot() -> None:
    """Sleep past the monitor's next snapshot. Snapshots are taken at start and every INTERVAL
    after; tests call :func:`mid_interval` first, so they never wake at a snapshot's instant."""
    await trio.sleep(INTERVAL)


async def mid_interval() -> None:
    await trio.sleep(INTERVAL / 2)


async def test_a_backlog_raises_an_alert_and_clears_once_drained(open_test_app, mock_clock):
    async with open_test_app(run_workers=False, monitor_interval_seconds=INTERVAL, alert_waiting=2,
                                alert_webhook_url=HOOK) as (app, clock):
        await mid_interval()
        monitor = app.tree.monitor
        ids = [(await app.engine.enqueue("test.job")).job_id for _ in range(3)]
        await next_snapshot()
        snap = monitor.latest()["default"]
        assert (snap.queue, snap.waiting, snap.delayed, snap.active) == ("default", 3, 0, 0)
        assert list(monitor.alerts) == [("backlog", "default")]
        assert monitor.status() == "degraded"
        sent = await announced(app)
        assert [(b["event"], b["name"], b["queue"], b["value"], b["threshold"]) for b in sent] == [
            ("alert", "backlog", "default", 3, 2)]

        await next_snapshot()  # still raised: no second webhook
        assert len(await announced(app)) == 1

        for job_id in ids:
            await app.engine.cancel(job_id)
        await next_snapshot()
        assert monitor.alerts == {} and monitor.status() == "healthy"
        assert len(monitor.history["default"]) == 3 and len(await announced(app)) == 1


async def test_history_keeps_the_last_monitor_history_snapshots(open_test_app, mock_clock):
    async with open_test_app(run_workers=False, monitor_interval_seconds=INTERVAL,
                                monitor_history=2) as (app, clock):
        await mid_interval()
        await app.engine.enqueue("test.job")
        for _ in range(4):
            await next_snapshot()
        snaps = list(app.tree.monitor.history["default"])
        assert len(snaps) == 2 and snaps[0].at < snaps[1].at


async def test_failures_above_the_rate_raise_an_alert_with_run_times(open_test_app, mock_clock):
    async with open_test_app(monitor_interval_seconds=INTERVAL, alert_failed_rate=0.3) as (app, clock):
        await mid_interval()
        @app.engine.handler("test.slow")
        async def slow(ctx):
            await trio.sleep(2)

        @app.engine.handler("test.bad")
        async def bad(ctx):
            raise RuntimeError("Reddit answered 503")

        await app.engine.enqueue("test.slow")
        await app.engine.enqueue("test.slow")
        await app.engine.enqueue("test.bad", max_attempts=1)
        await next_snapshot()
        snap = app.tree.monitor.latest()["default"]
        assert (snap.completed_recent, snap.failed_recent, snap.dead_recent) == (2, 1, 1)
        assert abs(snap.failed_rate - 1 / 3) < 1e-9
        assert snap.avg_seconds == snap.p95_seconds == 2.0
        assert ("failed_rate", "default") in app.tree.monitor.alerts

        await next_snapshot()  # nothing finished since: the rate is no longer above
        assert app.tree.monitor.alerts == {}


async def test_a_creators_refused_posts_never_make_the_system_degraded(open_test_app, mock_clock):
    async with open_test_app(monitor_interval_seconds=INTERVAL, alert_failed_rate=0.1) as (app, clock):
        await mid_interval()

        @app.engine.handler("test.typo")
        async def typo(ctx):
            raise PermanentJobError("Reddit refused the post: SUBREDDIT_NOEXIST")

        for _ in range(3):
            await app.engine.enqueue("test.typo", queue="posts")
        await next_snapshot()
        monitor = app.tree.monitor
        snap = monitor.latest()["posts"]
        assert (snap.dead_recent, snap.refused_recent, snap.failed_recent, snap.failed_rate) == (3, 3, 0, 0.0)
        assert monitor.alerts == {} and monitor.status() == "healthy"
        assert monitor.refused_recent() == 3


async def test_expired_leases_raise_a_stalled_alert(open_test_app, mock_clock):
    async with open_test_app(run_workers=False, monitor_interval_seconds=INTERVAL,
                                alert_stalled=0) as (app, clock):
        await mid_interval()
        await app.engine.enqueue("test.job", queue="stuck")
        (job,) = await app.store.claim("crashed-process", 1, 1.0)
        await trio.sleep(2)
        assert (await app.store.release_expired()).released == [job.id]
        await next_snapshot()
        assert app.tree.monitor.latest()["stuck"].stalled == 1
        assert ("stalled", "stuck") in app.tree.monitor.alerts


async def test_a_post_that_fails_for_good_sends_webhooks(open_test_app, mock_clock):
    async with open_test_app(monitor_interval_seconds=INTERVAL, alert_webhook_url=HOOK,
                                alert_failed_rate=1.0) as (app, clock):
        await mid_interval()
        store = app.store
        user = await store.create_user(NewUser(name="alice"))
        account = await store.create_account(NewAccount(user_id=user.id, reddit_username="alice_r",
                                                        refresh_token_encrypted=b"sealed"))

        async def refused_login(ctx):  # what the publisher does when Reddit refuses the token
            await store.set_needs_relink(account.id, True)
            raise PermanentJobError("Reddit refused the login: invalid_grant")

        app.engine.register_handler(POST_JOB_KIND, refused_login)
        content = PostContent(subreddit="test", title="Hello", text="hi")
        (post,) = await store.create_posts([NewPost(user_id=user.id, account_id=account.id,
                                                    content=content, scheduled_for=clock.now())])
        with trio.fail_after(60):
            while len(sent := await announced(app)) < 2:
                await trio.sleep(1)
        failed, relink = sorted(sent, key=lambda body: body["event"] != "post_failed")
        assert failed["event"] == "post_failed"
        assert (failed["post_id"], failed["job_id"], failed["account"], failed["subreddit"]) == (
            post.id, post.job_id, "alice_r", "test")
        assert failed["reason"] == "Reddit refused the login: invalid_grant"
        assert failed["cause"] == "refused"  # a plain PermanentJobError: the job's own fault
        assert relink == {"event": "account_needs_relink", "at": relink["at"], "account_id": account.id,
                          "user_id": user.id, "account": "alice_r"}
