"""Monitoring endpoints (#7): Prometheus ``/metrics``, readiness and health, queue metrics and
alerts from the queue monitor, breakers, cache, recent failures with a retry, and the dashboard
page at ``/``.

Everything needs an admin token except the dashboard page itself (a static page that signs in
with a token) and the liveness probe ``/api/health`` (in :mod:`thotto.api.openapi`).
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import msgspec
import trio
from starlette.requests import Request
from starlette.responses import Response

from thotto.api.app import EndpointGroup, json_response, path_id
from thotto.api.auth import require_admin
from thotto.errors import NotFound, StoreError, StoreUnavailable
from thotto.metrics import CONTENT_TYPE
from thotto.monitor import Alert, Failure, QueueSnapshot, SystemSnapshot

ENDPOINTS = EndpointGroup()
READY_TIMEOUT_SECONDS = 5.0
TAGS = ("monitoring",)


class Body(msgspec.Struct, kw_only=True, rename="camel"):
    """Base of these endpoints' response bodies (camelCase, like the rest of the API)."""


class Ready(Body):
    status: str
    store_latency_ms: float


class CronBody(Body):
    name: str
    schedule: str
    timezone: str
    next_run_at: Any = None
    last_run_at: Any = None
    last_duration_seconds: float | None = None
    last_error: str | None = None
    runs: int = 0


class Crons(Body):
    crons: list[CronBody]


class QueueMetrics(Body):
    status: str
    interval_seconds: float
    queues: list[QueueSnapshot]
    system: SystemSnapshot | None


class QueueHistory(Body):
    queue: str
    latest: QueueSnapshot
    history: list[QueueSnapshot]


class QueueHealth(Body):
    status: str
    alerts: list[Alert]


class Component(Body):
    name: str
    status: str
    """``ok``, ``off`` (not configured) or ``degraded``/``down``."""
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


class SystemHealth(Body):
    status: str
    """``healthy`` or ``degraded``."""
    components: list[Component]
    alerts: list[Alert]


class Failures(Body):
    failures: list[Failure]


class Retried(Body):
    job_id: int
    retried: bool


def _engine(request: Request):
    return request.app.state.api.engine


def _monitor(request: Request):
    tree = _engine(request).tree
    if tree is None:
        raise StoreUnavailable("The engine is not running")
    return tree.monitor


async def _latest(request: Request) -> dict[str, QueueSnapshot]:
    """The monitor's last snapshot of every queue; takes one now if none was taken yet."""
    monitor = _monitor(request)
    if monitor.snapshots_taken == 0:
        await monitor.snapshot()
    return monitor.latest()


# --- Prometheus and probes ---------------------------------------------------------------------


@ENDPOINTS.add("GET", "/metrics", "Prometheus metrics (text exposition format)", auth="admin",
               tags=TAGS, content_type=CONTENT_TYPE, errors=(401, 403))
async def metrics(request: Request) -> Response:
    await require_admin(request)
    engine = _engine(request)
    registry = engine.services.metrics
    try:
        await registry.refresh(engine.store)
    except StoreError:
        pass  # the depth gauges keep their last values; the rest is still worth scraping
    return Response(registry.render(), media_type=CONTENT_TYPE)


@ENDPOINTS.add("GET", "/api/health/ready", "Readiness: the store answers (503 if not)",
               response=Ready, auth="admin", tags=TAGS, errors=(401, 403, 503))
async def ready(request: Request) -> Response:
    await require_admin(request)
    latency = await _store_latency(request)
    return json_response(Ready(status="ready", store_latency_ms=latency))


async def _store_latency(request: Request) -> float:
    """Milliseconds for a small store read; StoreUnavailable (503) if it fails or hangs."""
    started = time.perf_counter()
    try:
        with trio.fail_after(READY_TIMEOUT_SECONDS):
            await _engine(request).store.next_due()
    except (StoreError, trio.TooSlowError) as error:
        raise StoreUnavailable(f"The store did not answer: {error or 'timed out'}") from error
    return (time.perf_counter() - started) * 1000


@ENDPOINTS.add("GET", "/api/health/crons", "Cron jobs: schedule, next and last run, last error",
               response=Crons, auth="admin", tags=TAGS, errors=(401, 403))
async def crons(request: Request) -> Response:
    await require_admin(request)
    statuses = await _engine(request).cron_statuses()
    return json_response(Crons(crons=[CronBody(
        name=s.name, schedule=s.schedule, timezone=s.timezone, next_run_at=s.next_run_at,
        last_run_at=s.last_run_at, last_duration_seconds=s.last_duration_seconds,
        last_error=s.last_error, runs=s.runs) for s in statuses]))


# --- the queue monitor -------------------------------------------------------------------------


@ENDPOINTS.add("GET", "/api/monitoring/queue-metrics", "Every queue's latest snapshot",
               response=QueueMetrics, auth="admin", tags=TAGS, errors=(401, 403))
async def queue_metrics(request: Request) -> Response:
    await require_admin(request)
    latest = await _latest(request)
    monitor = _monitor(request)
    return json_response(QueueMetrics(status=monitor.status(), queues=list(latest.values()),
                                      interval_seconds=monitor.settings.monitor_interval_seconds,
                                      system=monitor.system))


@ENDPOINTS.add("GET", "/api/monitoring/queue-metrics/{queue}", "One queue's snapshots, oldest first",
               response=QueueHistory, auth="admin", tags=TAGS, errors=(401, 403, 404))
async def queue_history(request: Request) -> Response:
    await require_admin(request)
    name = request.path_params["queue"]
    await _latest(request)
    history = list(_monitor(request).history.get(name, ()))
    if not history:
        raise NotFound(f"No such queue: {name!r}")
    return json_response(QueueHistory(queue=name, latest=history[-1], history=history))


@ENDPOINTS.add("GET", "/api/monitoring/queue-health", "Alerts raised by the queue monitor",
               response=QueueHealth, auth="admin", tags=TAGS, errors=(401, 403))
async def queue_health(request: Request) -> Response:
    await require_admin(request)
    await _latest(request)
    monitor = _monitor(request)
    return json_response(QueueHealth(status=monitor.status(), alerts=list(monitor.alerts.values())))


@ENDPOINTS.add("GET", "/api/monitoring/failures", "Jobs this process dead-lettered recently",
               response=Failures, auth="admin", tags=TAGS, errors=(401, 403))
async def failures(request: Request) -> Response:
    await require_admin(request)
    return json_response(Failures(failures=list(_monitor(request).failures)))


@ENDPOINTS.add("POST", "/api/monitoring/jobs/{id}/retry", "Run a dead job again (attempts reset)",
               response=Retried, auth="admin", tags=TAGS, errors=(401, 403, 404))
async def retry_job(request: Request) -> Response:
    await require_admin(request)
    job_id = path_id(request)
    store = _engine(request).store
    await store.get_job(job_id)  # NotFound for an unknown id
    retried = await store.redrive([job_id])
    return json_response(Retried(job_id=job_id, retried=job_id in retried))


# --- system health -----------------------------------------------------------------------------


@ENDPOINTS.add("GET", "/api/monitoring/system-health", "Store, Redis, Reddit, actors and cache",
               response=SystemHealth, auth="admin", tags=TAGS, errors=(401, 403))
async def system_health(request: Request) -> Response:
    await require_admin(request)
    engine = _engine(request)
    await _latest(request)
    monitor = _monitor(request)
    components = [await _store_component(request), _redis_component(engine, monitor),
                  _reddit_component(engine), _actors_component(engine), _cache_component(engine)]
    bad = any(c.status not in ("ok", "off") for c in components) or monitor.alerts
    return json_response(SystemHealth(status="degraded" if bad else "healthy", components=components,
                                      alerts=list(monitor.alerts.values())))


async def _store_component(request: Request) -> Component:
    try:
        latency = await _store_latency(request)
    except StoreUnavailable as error:
        return Component(name="store", status="down", detail={"error": str(error)})
    return Component(name="store", status="ok", detail={
        "adapter": _engine(request).store.name, "latencyMs": round(latency, 3)})


def _redis_component(engine, monitor) -> Component:
    if not engine.settings.redis_url:
        return Component(name="redis", status="off")
    system = monitor.system
    if system is None or system.redis_error:
        return Component(name="redis", status="down",
                         detail={"error": system.redis_error if system else "not probed yet"})
    slow = system.redis_latency_ms > engine.settings.alert_redis_latency_ms
    return Component(name="redis", status="degraded" if slow else "ok", detail={
        "latencyMs": round(system.redis_latency_ms, 3), "memoryBytes": system.redis_memory_bytes})


def _reddit_component(engine) -> Component:
    if engine.services.reddit is None:
        return Component(name="reddit", status="off")
    states = {name: snap.state for name, snap in engine.services.breakers.snapshot().items()
              if name.startswith("reddit.")}
    app_open = any(state != "closed" for name, state in states.items() if name.startswith("reddit.client."))
    return Component(name="reddit", status="degraded" if app_open else "ok", detail={"breakers": states})


def _actors_component(engine) -> Component:
    tree = engine.tree
    if tree is None:
        return Component(name="actors", status="down")
    children = {c.name: {"state": c.state.value, "restarts": c.restart_count, "lastError": c.last_error}
                for c in tree.supervisor.children()}
    healthy = tree.supervisor.state.value == "running" and all(
        child["state"] == "running" for child in children.values())
    return Component(name="actors", status="ok" if healthy else "degraded", detail={
        "supervisor": tree.supervisor.state.value, "children": children})


def _cache_component(engine) -> Component:
    stats = engine.services.cache.stats()
    status = {"off": "ok", "ok": "ok"}.get(stats.l2, "degraded")
    return Component(name="cache", status=status, detail={
        "l2": stats.l2, "keys": stats.keys, "hitRatio": round(stats.hit_ratio, 4)})


# --- breakers and cache ------------------------------------------------------------------------


@ENDPOINTS.add("GET", "/api/monitoring/breakers", "Every circuit breaker's state and counters",
               auth="admin", tags=TAGS, errors=(401, 403))
async def breakers(request: Request) -> Response:
    await require_admin(request)
    services = _engine(request).services
    snapshots = dict(services.breakers.snapshot())
    redis = services.cache.breaker.snapshot()
    snapshots.setdefault(redis.name, redis)
    return json_response({"breakers": [snapshots[name] for name in sorted(snapshots)]})


@ENDPOINTS.add("GET", "/api/monitoring/cache", "Cache counters (L1, L2, loads, evictions)",
               auth="admin", tags=TAGS, errors=(401, 403))
async def cache(request: Request) -> Response:
    await require_admin(request)
    stats = _engine(request).services.cache.stats()
    return json_response({"stats": stats, "hitRatio": stats.hit_ratio})


# --- the dashboard -----------------------------------------------------------------------------


@ENDPOINTS.add("GET", "/", "The monitoring dashboard (HTML; signs in with an admin token)",
               auth=None, tags=TAGS, content_type="text/html")
async def dashboard(request: Request) -> Response:
    return Response(dashboard_html(), media_type="text/html; charset=utf-8")


def dashboard_html() -> bytes:
    """The dashboard page (``thotto/api/dashboard.html``, shipped with the package)."""
    return resources.files("thotto.api").joinpath("dashboard.html").read_bytes()
