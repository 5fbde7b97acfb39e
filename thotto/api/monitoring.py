"""Monitoring and operating endpoints: Prometheus ``/metrics``, readiness and health, queue
metrics and alerts from the queue monitor, breakers, cache, failures (from the store) with a
retry where one can succeed, the operators' job search, job pages, retry, cancel and redrive,
pausing and resuming queues, the webhook delivery log, and the dashboard page at
``/operator``.

Everything needs an admin token except the dashboard page itself (a static page that signs in
with a token) and the liveness probe ``/api/health`` (in :mod:`thotto.api.openapi`).
"""

from __future__ import annotations

import time
from datetime import datetime
from importlib import resources
from typing import Annotated, Any

import msgspec
import trio
from starlette.requests import Request
from starlette.responses import Response

from thotto.scheduler import webhooks
from thotto.api.auth import require_admin
from thotto.api.endpoints import EndpointGroup, json_response, path_id, read_json, read_query
from thotto.engine.errors import NotFound, StoreError, StoreUnavailable
from thotto.errors import ValidationError
from thotto.engine.jobs import JobState, Name
from thotto.scheduler.records import Role, FlairId, FlairText, PostView, Subreddit, Title
from thotto.metrics import CONTENT_TYPE
from thotto.monitor import Alert, QueueSnapshot, SystemSnapshot
from thotto.engine.store.base import JobSearch
from thotto.usecases import operations
from thotto.usecases.posts import post_view
from thotto.api.endpoints import ApiContext
from thotto.monitor import Monitor

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
    refused_recent: int = 0
    """Posts (and jobs) refused for their own fault in the last interval, every queue: the
    creators' to fix, and no part of ``status``."""


class Component(Body):
    name: str
    status: str
    """``ok``, ``off`` (not configured) or ``degraded``/``down``."""
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


class SystemHealth(Body):
    status: str
    """``healthy`` or ``degraded`` (system failures only: a creator's refused post is not one)."""
    components: list[Component]
    alerts: list[Alert]
    refused_recent: int = 0
    """Posts (and jobs) refused for their own fault in the last interval (see queue-health)."""


class Retried(Body):
    job_id: int
    retried: bool


class PageQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A page of a list, newest first."""

    cursor: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50


class FailureQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    queue: Name | None = None


class JobQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    """Filters of ``GET /api/jobs``: each narrows the search; ``from``/``to`` bound ``runAt``."""

    queue: Name | None = None
    kind: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    state: JobState | None = None
    run_from: Annotated[datetime, msgspec.Meta(tz=True)] | None = msgspec.field(default=None, name="from")
    """Only jobs due at or after this time (ISO 8601 with offset)."""
    run_to: Annotated[datetime, msgspec.Meta(tz=True)] | None = msgspec.field(default=None, name="to")
    """Only jobs due before this time."""

    def search(self) -> JobSearch:
        return JobSearch(queue=self.queue, kind=self.kind, state=self.state, run_from=self.run_from,
                         run_to=self.run_to, cursor=self.cursor, limit=self.limit)


class RedriveRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """Either ``jobIds``, or a search (every dead job matching ``queue``, ``kind``, ``from``,
    ``to``; an empty body redrives every dead job that can succeed again)."""

    job_ids: Annotated[list[Annotated[int, msgspec.Meta(ge=1)]], msgspec.Meta(min_length=1, max_length=1000)] | None = None
    queue: Name | None = None
    kind: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    run_from: Annotated[datetime, msgspec.Meta(tz=True)] | None = msgspec.field(default=None, name="from")
    run_to: Annotated[datetime, msgspec.Meta(tz=True)] | None = msgspec.field(default=None, name="to")


class FailedPostChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    """A failed post's corrections and its new time (required: it is scheduled again)."""

    scheduled_for: Annotated[datetime, msgspec.Meta(tz=True)]
    subreddit: Subreddit | None = None
    title: Title | None = None
    text: Annotated[str, msgspec.Meta(max_length=40000)] | None = None
    url: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    flair_id: FlairId | None = None
    flair_text: FlairText | None = None


class Deliveries(Body):
    deliveries: list[webhooks.DeliveryView]
    next_cursor: str | None = None


def _context(request: Request) -> ApiContext:
    return request.app.state.api


def _monitor(request: Request) -> Monitor:
    monitor = _context(request).monitor
    if monitor is None:
        raise StoreUnavailable("The engine is not running")
    return monitor


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
    context = _context(request)
    registry = context.services.metrics
    try:
        await registry.refresh(context.store)
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
            await _context(request).store.next_due()
    except (StoreError, trio.TooSlowError) as error:
        raise StoreUnavailable(f"The store did not answer: {error or 'timed out'}") from error
    return (time.perf_counter() - started) * 1000


@ENDPOINTS.add("GET", "/api/health/crons", "Cron jobs: schedule, next and last run, last error",
               response=Crons, auth="admin", tags=TAGS, errors=(401, 403))
async def crons(request: Request) -> Response:
    await require_admin(request)
    statuses = await _context(request).engine.cron_statuses()
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
    return json_response(QueueHealth(status=monitor.status(), alerts=list(monitor.alerts.values()),
                                     refused_recent=monitor.refused_recent()))


# --- failures and operating queues ---------------------------------------------------------------


@ENDPOINTS.add("GET", "/api/monitoring/failures",
               "Dead jobs, newest first, with their post, user, title, reason and whether a retry can succeed",
               query=FailureQuery, response=operations.FailureList, auth="admin", tags=TAGS,
               errors=(401, 403, 422))
async def failures(request: Request) -> Response:
    await require_admin(request)
    query = read_query(request, FailureQuery)
    return json_response(await operations.failures(_context(request).scheduler, queue=query.queue,
                                                   cursor=query.cursor, limit=query.limit))


@ENDPOINTS.add("POST", "/api/monitoring/jobs/{id}/retry",
               "Run a dead (or waiting) job now, where a retry can succeed (409 says what to do if not)",
               response=Retried, auth="admin", tags=TAGS, errors=(401, 403, 404, 409))
async def retry_failure(request: Request) -> Response:
    await require_admin(request)
    job = await operations.retry_job(_context(request).scheduler, path_id(request))
    return json_response(Retried(job_id=job.id, retried=True))


@ENDPOINTS.add("POST", "/api/monitoring/failures/{id}/reschedule",
               "Edit a failed post (by its job id) and schedule it again, checked as a new post",
               body=FailedPostChange, response=PostView, auth="admin", tags=TAGS,
               errors=(400, 401, 403, 404, 409, 413, 422))
async def reschedule_failure(request: Request) -> Response:
    await require_admin(request)
    change = await read_json(request, FailedPostChange)
    edits = {name: getattr(change, name) for name in ("subreddit", "title", "text", "url",
                                                      "flair_id", "flair_text")
             if getattr(change, name) is not None}
    post = await operations.reschedule_failed_post(_context(request).scheduler, path_id(request),
                                                   scheduled_for=change.scheduled_for, edits=edits)
    return json_response(post_view(post))


@ENDPOINTS.add("GET", "/api/jobs", "Search jobs by queue, kind, state and due time (cursor pagination)",
               query=JobQuery, response=operations.JobList, auth="admin", tags=TAGS,
               errors=(401, 403, 422))
async def search_jobs(request: Request) -> Response:
    await require_admin(request)
    query = read_query(request, JobQuery)
    return json_response(await operations.search(_context(request).scheduler, query.search()))


@ENDPOINTS.add("POST", "/api/jobs/redrive",
               "Redrive dead jobs (by id, or every one matching a search) that can succeed again",
               body=RedriveRequest, response=operations.Redriven, auth="admin", tags=TAGS,
               errors=(400, 401, 403, 404, 413, 422))
async def redrive_jobs(request: Request) -> Response:
    await require_admin(request)
    body = await read_json(request, RedriveRequest)
    context = _context(request)
    if body.job_ids is not None:
        if any(value is not None for value in (body.queue, body.kind, body.run_from, body.run_to)):
            raise ValidationError("Give either jobIds or a search (queue, kind, from, to), not both",
                                  field="jobIds")
        return json_response(await operations.redrive(context.scheduler, job_ids=body.job_ids))
    search = JobSearch(queue=body.queue, kind=body.kind, run_from=body.run_from, run_to=body.run_to)
    return json_response(await operations.redrive(context.scheduler, query=search))


@ENDPOINTS.add("GET", "/api/jobs/{id}", "A job: payload, attempts, errors, its post, and whether it can be retried",
               response=operations.JobDetail, auth="admin", tags=TAGS, errors=(401, 403, 404))
async def get_job(request: Request) -> Response:
    await require_admin(request)
    return json_response(await operations.job_detail(_context(request).scheduler, path_id(request)))


@ENDPOINTS.add("POST", "/api/jobs/{id}/retry",
               "Run a job now: a waiting one at once, a dead one redriven where a retry can succeed",
               response=operations.JobView, auth="admin", tags=TAGS, errors=(401, 403, 404, 409))
async def retry_job(request: Request) -> Response:
    await require_admin(request)
    return json_response(await operations.retry_job(_context(request).scheduler, path_id(request)))


@ENDPOINTS.add("POST", "/api/jobs/{id}/cancel",
               "Cancel a waiting job (a publishing job cancels its post, by the posts' rules)",
               response=operations.JobView, auth="admin", tags=TAGS, errors=(401, 403, 404, 409))
async def cancel_job(request: Request) -> Response:
    await require_admin(request)
    return json_response(await operations.cancel_job(_context(request).scheduler, path_id(request)))


@ENDPOINTS.add("GET", "/api/queues", "Every queue with its counts by state, and whether it is paused",
               response=operations.QueueList, auth="admin", tags=TAGS, errors=(401, 403))
async def list_queues(request: Request) -> Response:
    await require_admin(request)
    return json_response(await operations.queues(_context(request).scheduler))


def _queue_name(request: Request) -> str:
    name = request.path_params["queue"]
    try:
        return msgspec.convert(name, Name)
    except msgspec.ValidationError:
        raise ValidationError(f"{name!r} is not a queue name: 1-64 letters, digits, '_', '.', ':' "
                              "or '-', starting with a letter or digit", field="queue") from None


@ENDPOINTS.add("POST", "/api/queues/{queue}/pause",
               "Pause a queue: no process claims its jobs until it is resumed (durable)",
               response=operations.QueueState, auth="admin", tags=TAGS, errors=(401, 403, 422))
async def pause_queue(request: Request) -> Response:
    await require_admin(request)
    return json_response(await operations.pause(_context(request).scheduler, _queue_name(request)))


@ENDPOINTS.add("POST", "/api/queues/{queue}/resume", "Resume a paused queue in every process",
               response=operations.QueueState, auth="admin", tags=TAGS, errors=(401, 403, 422))
async def resume_queue(request: Request) -> Response:
    await require_admin(request)
    return json_response(await operations.resume(_context(request).scheduler, _queue_name(request)))


@ENDPOINTS.add("GET", "/api/monitoring/webhooks",
               "The webhook delivery log, newest first: event, URL, status, attempts, last error",
               query=PageQuery, response=Deliveries, auth="admin", tags=TAGS, errors=(401, 403, 422))
async def webhook_deliveries(request: Request) -> Response:
    await require_admin(request)
    query = read_query(request, PageQuery)
    found, cursor = await webhooks.deliveries(_context(request).store, cursor=query.cursor,
                                              limit=query.limit)
    return json_response(Deliveries(deliveries=found, next_cursor=cursor))


# --- system health -----------------------------------------------------------------------------


@ENDPOINTS.add("GET", "/api/monitoring/system-health", "Store, Redis, Reddit, actors and cache",
               response=SystemHealth, auth="admin", tags=TAGS, errors=(401, 403))
async def system_health(request: Request) -> Response:
    await require_admin(request)
    context = _context(request)
    await _latest(request)
    monitor = _monitor(request)
    components = [await _store_component(request), _redis_component(context, monitor),
                  _reddit_component(context), _actors_component(context), _cache_component(context)]
    bad = any(c.status not in ("ok", "off") for c in components) or monitor.alerts
    return json_response(SystemHealth(status="degraded" if bad else "healthy", components=components,
                                      alerts=list(monitor.alerts.values()),
                                      refused_recent=monitor.refused_recent()))


async def _store_component(request: Request) -> Component:
    try:
        latency = await _store_latency(request)
    except StoreUnavailable as error:
        return Component(name="store", status="down", detail={"error": str(error)})
    return Component(name="store", status="ok", detail={
        "adapter": _context(request).store.name, "latencyMs": round(latency, 3)})


def _redis_component(context: ApiContext, monitor: Monitor) -> Component:
    if not context.settings.redis_url:
        return Component(name="redis", status="off")
    system = monitor.system
    if system is None or system.redis_error:
        return Component(name="redis", status="down",
                         detail={"error": system.redis_error if system else "not probed yet"})
    slow = system.redis_latency_ms > context.settings.alert_redis_latency_ms
    return Component(name="redis", status="degraded" if slow else "ok", detail={
        "latencyMs": round(system.redis_latency_ms, 3), "memoryBytes": system.redis_memory_bytes})


def _reddit_component(context: ApiContext) -> Component:
    if context.services.reddit is None:
        return Component(name="reddit", status="off")
    states = {name: snap.state for name, snap in context.services.breakers.snapshot().items()
              if name.startswith("reddit.")}
    app_open = any(state != "closed" for name, state in states.items() if name.startswith("reddit.client."))
    return Component(name="reddit", status="degraded" if app_open else "ok", detail={"breakers": states})


def _actors_component(context: ApiContext) -> Component:
    supervisor = context.supervisor
    if supervisor is None:
        return Component(name="actors", status="down")
    children = {c.name: {"state": c.state.value, "restarts": c.restart_count, "lastError": c.last_error}
                for c in supervisor.children()}
    healthy = supervisor.state.value == "running" and all(
        child["state"] == "running" for child in children.values())
    return Component(name="actors", status="ok" if healthy else "degraded", detail={
        "supervisor": supervisor.state.value, "children": children})


def _cache_component(context: ApiContext) -> Component:
    stats = context.cache.stats()
    status = {"off": "ok", "ok": "ok"}.get(stats.l2, "degraded")
    return Component(name="cache", status=status, detail={
        "l2": stats.l2, "keys": stats.keys, "hitRatio": round(stats.hit_ratio, 4)})


# --- breakers and cache ------------------------------------------------------------------------


@ENDPOINTS.add("GET", "/api/monitoring/breakers", "Every circuit breaker's state and counters",
               auth="admin", tags=TAGS, errors=(401, 403))
async def breakers(request: Request) -> Response:
    await require_admin(request)
    services = _context(request).services
    snapshots = dict(services.breakers.snapshot())
    redis = services.cache.breaker.snapshot()
    snapshots.setdefault(redis.name, redis)
    return json_response({"breakers": [snapshots[name] for name in sorted(snapshots)]})


@ENDPOINTS.add("GET", "/api/monitoring/cache", "Cache counters (L1, L2, loads, evictions)",
               auth="admin", tags=TAGS, errors=(401, 403))
async def cache(request: Request) -> Response:
    await require_admin(request)
    stats = _context(request).services.cache.stats()
    return json_response({"stats": stats, "hitRatio": stats.hit_ratio})


# --- the dashboard -----------------------------------------------------------------------------


DASHBOARD_PATH = "/operator"
_NO_SESSION = b'<meta name="csrf-token" content="">'


@ENDPOINTS.add("GET", DASHBOARD_PATH,
               "The operators' monitoring dashboard (HTML): an admin signed in to the app uses it "
               "at once; otherwise it signs in with an admin API token",
               auth=None, tags=TAGS, content_type="text/html")
async def dashboard(request: Request) -> Response:
    from thotto.web.sessions import current_session

    page = dashboard_html()
    session = await current_session(request)
    if session is not None and session.user.role is Role.ADMIN:
        # The page's requests then go with the session's cookie and this CSRF token.
        page = page.replace(_NO_SESSION, f'<meta name="csrf-token" content="{session.csrf_token}">'.encode())
    return Response(page, media_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})


def dashboard_html() -> bytes:
    """The dashboard page (``thotto/api/dashboard.html``, shipped with the package)."""
    return resources.files("thotto.api").joinpath("dashboard.html").read_bytes()
