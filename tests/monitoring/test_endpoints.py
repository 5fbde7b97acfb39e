"""Monitoring over real HTTP: ``/metrics`` parsed as Prometheus text after real jobs ran, the
monitoring JSON endpoints, admin-only access, and redriving a dead job."""

from __future__ import annotations

import trio
from prometheus_client.parser import text_string_to_metric_families

from thotto.engine.errors import PermanentJobError

OK_JOBS, BAD_JOBS = 5, 2


async def run_jobs(api) -> list[int]:
    """Run OK_JOBS jobs that succeed and BAD_JOBS that fail for good in queue ``work``; the ids
    of the failed ones, once every outcome is stored."""
    app = api.app

    async def ok(ctx) -> None:
        await trio.sleep(0.01)

    async def bad(ctx) -> None:
        raise PermanentJobError("refused: the subreddit does not exist")

    app.engine.register_handler("test.ok", ok)
    app.engine.register_handler("test.bad", bad)
    for _ in range(OK_JOBS):
        await app.engine.enqueue("test.ok", queue="work")
    failed = [(await app.engine.enqueue("test.bad", queue="work")).job_id for _ in range(BAD_JOBS)]
    with trio.fail_after(20):
        while True:
            counts = {(c.queue, c.state.value): c.count for c in await app.engine.counts()}
            if counts.get(("work", "completed")) == OK_JOBS and counts.get(("work", "dead")) == BAD_JOBS:
                break
            await trio.sleep(0.05)
    return failed


def samples(text: str) -> dict[str, list]:
    """Every sample by sample name (``thotto_jobs_total``, ``..._bucket``...)."""
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def value(found: dict[str, list], name: str, **labels) -> float:
    matching = [s.value for s in found.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert matching, f"no sample {name} {labels}"
    return sum(matching)


async def test_metrics_need_an_admin_token(api):
    async with api.client() as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 401
    assert (await api.pro.client.get("/metrics")).status_code == 403
    response = await api.admin.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")


async def test_metrics_describe_the_jobs_that_ran(api):
    await run_jobs(api)
    await api.admin.client.get("/api/monitoring/queue-metrics")  # one timed request to count
    found = samples((await api.admin.client.get("/metrics")).text)

    assert value(found, "thotto_jobs_enqueued_total", queue="work", kind="test.ok") == OK_JOBS
    assert value(found, "thotto_jobs_enqueued_total", queue="work", kind="test.bad") == BAD_JOBS
    assert value(found, "thotto_jobs_total", queue="work", kind="test.ok", outcome="completed") == OK_JOBS
    assert value(found, "thotto_jobs_total", queue="work", kind="test.bad", outcome="dead") == BAD_JOBS
    # Every job's run time and lateness counted once; the successful ones slept 10 ms.
    assert value(found, "thotto_job_duration_seconds_count", queue="work", kind="test.ok") == OK_JOBS
    assert value(found, "thotto_job_duration_seconds_sum", queue="work", kind="test.ok") >= OK_JOBS * 0.01
    assert value(found, "thotto_job_lateness_seconds_count", queue="work", kind="test.bad") == BAD_JOBS
    assert value(found, "thotto_queue_jobs", queue="work", state="completed") == OK_JOBS
    assert value(found, "thotto_queue_jobs", queue="work", state="dead") == BAD_JOBS
    assert value(found, "thotto_queue_jobs", queue="work", state="pending") == 0
    assert value(found, "thotto_store_operation_seconds_count", operation="claim") >= 1
    assert value(found, "thotto_store_batch_size_sum", operation="settle") >= OK_JOBS + BAD_JOBS
    assert value(found, "thotto_http_request_duration_seconds_count",
                 method="GET", route="/api/monitoring/queue-metrics", status="200") == 1
    assert value(found, "thotto_actor_restarts_total", actor="workers") == 0
    assert value(found, "thotto_actor_up", actor="monitor") == 1
    assert value(found, "thotto_breaker_state", breaker="redis", state="closed") == 1
    assert "thotto_cache_hits_total" in found and "thotto_cache_load_seconds_count" in found
    assert value(found, "thotto_leases_expired_total", result="pending") == 0


async def test_queue_metrics_history_and_health(api):
    await run_jobs(api)
    admin = api.admin.client
    with trio.fail_after(10):  # a snapshot taken after the jobs finished
        while not [q for q in (await admin.get("/api/monitoring/queue-metrics")).json()["queues"]
                   if q["queue"] == "work" and q["completed"] == OK_JOBS]:
            await trio.sleep(0.05)
    (work,) = [q for q in (await admin.get("/api/monitoring/queue-metrics")).json()["queues"]
               if q["queue"] == "work"]
    assert (work["waiting"], work["active"], work["dead"]) == (0, 0, BAD_JOBS)

    history = (await admin.get("/api/monitoring/queue-metrics/work")).json()
    assert history["latest"]["queue"] == "work" and len(history["history"]) >= 1
    assert (await admin.get("/api/monitoring/queue-metrics/nope")).status_code == 404

    # 2 of 7 attempts failed, above the default 10%: an alert until a quiet interval clears it.
    health = (await admin.get("/api/monitoring/queue-health")).json()
    assert health["status"] in ("healthy", "degraded")
    system = (await admin.get("/api/monitoring/system-health")).json()
    assert {c["name"] for c in system["components"]} == {"store", "redis", "reddit", "actors", "cache"}
    components = {c["name"]: c for c in system["components"]}
    assert components["store"]["status"] == "ok" and components["redis"]["status"] == "off"
    assert components["actors"]["detail"]["children"]["monitor"]["state"] == "running"

    breakers = (await admin.get("/api/monitoring/breakers")).json()["breakers"]
    assert any(b["name"] == "redis" for b in breakers)
    cache = (await admin.get("/api/monitoring/cache")).json()
    assert cache["stats"]["l2"] == "off"
    crons = (await admin.get("/api/health/crons")).json()["crons"]
    assert "retention" in {c["name"] for c in crons}
    ready = await admin.get("/api/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert (await api.pro.client.get("/api/monitoring/system-health")).status_code == 403


async def test_a_failure_is_listed_and_retried(api):
    failed = await run_jobs(api)
    admin = api.admin.client
    listed = (await admin.get("/api/monitoring/failures")).json()["failures"]
    assert sorted(f["jobId"] for f in listed) == sorted(failed)
    assert listed[0]["reason"] == "refused: the subreddit does not exist"

    response = await admin.post(f"/api/monitoring/jobs/{failed[0]}/retry")
    assert response.status_code == 200 and response.json() == {"jobId": failed[0], "retried": True}
    with trio.fail_after(10):  # it runs again, and fails again
        while (await api.app.engine.attempts(failed[0]))[-1].attempt != 1 or len(
                await api.app.engine.attempts(failed[0])) < 2:
            await trio.sleep(0.05)
    assert (await admin.post("/api/monitoring/jobs/999999/retry")).status_code == 404
    still_pending = (await admin.post(f"/api/monitoring/jobs/{failed[1]}/retry")).json()
    assert still_pending["retried"] is True
