"""Storage under faults: restarts of Thotto (scenario 2), Postgres restarted while posting
(scenario 6), Redis killed (scenario 7). The sandbox's record is the judge."""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio

from tests.chaos import faults
from tests.chaos.harness import titles, spread
from thotto.engine.jobs import utcnow

pytestmark = pytest.mark.chaos


async def test_2_scheduled_posts_survive_restarts_and_publish_at_their_times(make_chaos):
    chaos = make_chaos()  # the default store, SQLite: seeded while Thotto is down
    start = utcnow()
    first = await chaos.seed(titles("before", 5), spread(4, 1.5, 5))
    during = await chaos.seed(titles("downtime", 3), lambda i: start + timedelta(seconds=8))
    after = await chaos.seed(titles("after", 5), lambda i: start + timedelta(seconds=12 + i * 0.5))
    thotto = chaos.thotto()
    await thotto.start()
    await chaos.wait_for_record(len(first), timeout=30)
    assert await faults.sigterm(thotto) == 0
    # Down while the "downtime" posts fall due; back before the "after" ones.
    await trio.sleep_until(trio.current_time() + (start + timedelta(seconds=9) - utcnow()).total_seconds())
    assert len(chaos.sandbox.record()) == len(first)
    await thotto.start()
    await chaos.wait_until_all_finished(timeout=30)
    assert await faults.sigterm(thotto) == 0
    verdict = await chaos.judge()
    accepted = {post["title"]: post["created_utc"] for post in verdict.record}
    for post in first + after:  # due while Thotto ran: on time (created_utc is whole seconds)
        late = accepted[post.content.title] - post.scheduled_for.timestamp()
        assert late <= 2.0, f"{post.content.title} went out {late:.1f} s after its time"
    for post in during:  # due while it was down: once, after it came back
        assert accepted[post.content.title] >= post.scheduled_for.timestamp() - 1


async def test_6_postgres_restarted_while_posting_loses_and_duplicates_nothing(make_chaos, own_postgres, sizes):
    count, window, outage = sizes.pick((60, 6.0, 2.0), (300, 20.0, 10.0))
    chaos = make_chaos(own_postgres.create_database())
    await chaos.seed(titles("pg", count), spread(2, window, count))
    await faults.latency_spike(chaos.sandbox, 0.1)
    thotto = chaos.thotto()
    await thotto.start()
    await chaos.wait_for_record(count // 4, timeout=60)
    await faults.stop_postgres(own_postgres)
    stopped_with = len(chaos.sandbox.record())
    await trio.sleep(outage)  # Thotto keeps trying; posts due meanwhile wait
    await faults.start_postgres(own_postgres)
    assert stopped_with < count, "every post went out before Postgres stopped"
    await chaos.wait_until_all_finished(timeout=90)
    # It reconnected by itself: the same process, never restarted.
    assert thotto.alive and thotto.starts == 1, thotto.tail()
    await chaos.judge()


async def test_7_redis_killed_thotto_keeps_publishing_and_serving_then_recovers(make_chaos, postgres_dsn, own_redis):
    chaos = make_chaos(postgres_dsn, redis_url=own_redis.url)
    async with chaos.app() as app:  # the test's engine shares the Redis cache (L2)
        cache = app.services.cache
        await chaos.schedule(app, titles("redis up", 10), spread(2, 1, 10))
        thotto = chaos.thotto()
        await thotto.start()
        await chaos.wait_until_all_finished(timeout=30)
        assert cache.stats().l2 == "ok"

        faults.kill_redis(own_redis)
        # Scheduling still works (community rules come from memory or the loader) and Thotto
        # still publishes, with its cache and breakers each deciding alone.
        await chaos.schedule(app, titles("redis down", 10), spread(1, 1, 10))
        await chaos.wait_for("the cache to notice Redis is gone",
                             lambda: cache.stats().l2 == "degraded", timeout=30)
        await chaos.wait_until_all_finished(timeout=30)
        assert thotto.alive and thotto.starts == 1, thotto.tail()

        await faults.start_redis(own_redis)
        await chaos.wait_for("the cache to use Redis again",
                             lambda: cache.stats().l2 == "ok" and cache.stats().l2_subscribed, timeout=60)
        await chaos.schedule(app, titles("redis back", 10), spread(1, 1, 10))
        await chaos.wait_until_all_finished(timeout=30)
    assert thotto.alive and thotto.starts == 1, thotto.tail()
    await chaos.judge()
