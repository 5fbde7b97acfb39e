"""What Thotto says about itself through faults, over its HTTP API: the queue monitor keeps
reporting (scenario 4); the health endpoints say ``degraded`` during faults and ``healthy``
after (scenario 5). Posts keep being judged by the sandbox's record."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest
import trio

from tests.chaos import faults
from tests.chaos.harness import free_port, spread, titles
from thotto.usecases.tokens import new_token, token_hash
from thotto.engine.jobs import utcnow
from thotto.scheduler.records import NewUser, Role
from thotto.store import open_store

pytestmark = pytest.mark.chaos


class Api:
    """The Thotto process's HTTP API with an admin token."""

    def __init__(self, port: int, token: str):
        self.url = f"http://127.0.0.1:{port}"
        self.token = token

    async def get(self, path: str) -> tuple[int, dict]:
        async with httpx.AsyncClient(base_url=self.url, timeout=10,
                                     headers={"authorization": f"Bearer {self.token}"}) as http:
            response = await http.get(path)
        return response.status_code, response.json()

    async def system_health(self) -> dict:
        status, body = await self.get("/api/monitoring/system-health")
        assert status == 200, (status, body)
        return body


async def admin_token(database_url: str) -> str:
    token = new_token()
    async with open_store(database_url) as store:
        admin = await store.create_user(NewUser(name="chaos_admin", role=Role.ADMIN))
        await store.create_token(admin.id, "chaos", token_hash(token))
    return token


async def start_with_api(chaos, database_url: str) -> Api:
    api = Api(free_port(), await admin_token(database_url))
    thotto = chaos.thotto(serve_api=True, api_port=api.url.rsplit(":", 1)[1],
                          monitor_interval_seconds=0.5)
    await thotto.start()
    return api


def component(health: dict, name: str) -> str:
    return next(c["status"] for c in health["components"] if c["name"] == name)


async def test_4_the_queue_monitor_keeps_reporting_through_faults(make_chaos, own_postgres):
    chaos = make_chaos(own_postgres.create_database())
    scheduled = await chaos.seed(titles("monitored", 30), spread(3, 10, 30))
    api = await start_with_api(chaos, chaos.database_url)

    async def posts_snapshot() -> dict | None:
        status, body = await api.get("/api/monitoring/queue-metrics")
        assert status == 200, f"the queue monitor stopped answering: {status} {body}"
        return next((q for q in body["queues"] if q["queue"] == "posts"), None)

    async def reports_after(moment: datetime, what: str, timeout: float = 20) -> dict:
        """Poll until a snapshot of the posts queue taken after ``moment``; every poll answers."""
        found: dict = {}

        async def fresh() -> bool:
            snapshot = await posts_snapshot()
            if snapshot and datetime.fromisoformat(snapshot["at"]) > moment:
                found.update(snapshot)
                return True
            return False

        await chaos.wait_for(f"a queue snapshot {what}", fresh, timeout=timeout)
        return found

    await reports_after(utcnow(), "at startup")
    await faults.reddit_503_storm(chaos.sandbox)
    await reports_after(utcnow(), "during a Reddit outage")
    await faults.reddit_recovers(chaos.sandbox)

    await faults.stop_postgres(own_postgres)
    with trio.move_on_after(2):  # the monitor cannot count jobs now, but it keeps answering
        while True:
            await posts_snapshot()
            await trio.sleep(0.2)
    await faults.start_postgres(own_postgres)
    await reports_after(utcnow(), "after Postgres came back", timeout=30)

    await chaos.wait_until_all_finished(timeout=90)
    final = await reports_after(utcnow(), "after every post was published")
    assert final["completed"] == len(scheduled) and final["waiting"] == 0 and final["active"] == 0, final
    await chaos.judge()


async def test_5_health_says_degraded_during_faults_and_healthy_after(make_chaos, own_postgres, own_redis):
    chaos = make_chaos(own_postgres.create_database(), redis_url=own_redis.url)
    await chaos.seed(titles("health", 20), spread(3, 10, 20))
    api = await start_with_api(chaos, chaos.database_url)

    async def health_is(status: str, **components: str) -> bool:
        health = await api.system_health()
        return health["status"] == status and all(
            component(health, name) == want for name, want in components.items())

    await chaos.wait_for("healthy at startup", lambda: health_is("healthy"), timeout=30)

    await faults.reddit_503_storm(chaos.sandbox)
    await chaos.wait_for("degraded during a Reddit outage",
                         lambda: health_is("degraded", reddit="degraded"), timeout=30)
    await faults.reddit_recovers(chaos.sandbox)
    await chaos.wait_for("healthy after Reddit came back", lambda: health_is("healthy"), timeout=60)

    faults.kill_redis(own_redis)
    await chaos.wait_for("degraded without Redis", lambda: health_is("degraded", redis="down"), timeout=30)
    await faults.start_redis(own_redis)
    await chaos.wait_for("healthy after Redis came back", lambda: health_is("healthy"), timeout=60)

    await faults.stop_postgres(own_postgres)
    await chaos.wait_for("degraded without Postgres", lambda: health_is("degraded", store="down"), timeout=30)
    status, _ = await api.get("/api/health/ready")
    assert status == 503, "ready while the store is down"
    await faults.start_postgres(own_postgres)
    await chaos.wait_for("healthy after Postgres came back", lambda: health_is("healthy"), timeout=60)
    status, _ = await api.get("/api/health/ready")
    assert status == 200

    await chaos.wait_until_all_finished(timeout=90)
    await chaos.judge()
