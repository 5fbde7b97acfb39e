"""What an operator does to the queues, written once for the API and the CLI: search jobs, read a
job, retry, cancel and redrive jobs, pause and resume queues, and list failures.

Retrying follows one rule (:func:`retry_verdict`): a job runs again only where running it again
can succeed. A failure of the system (Reddit down, a timeout, a crash, an expired lease) may not
repeat: retry. A post whose account had to be linked again may be retried once it has been. A
post Reddit refused for what it is (a subreddit that does not exist, no text posts allowed, a
missing flair) would be refused again: it is edited and rescheduled instead
(:func:`reschedule_failed_post`, or ``PATCH /api/scheduled-posts/{id}`` by its owner). Retrying
a dead job changes that job's row (it becomes pending): it never adds a job or a failure.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from thotto.engine.errors import NotFound
from thotto.errors import Conflict, InvalidTransition
from thotto.engine.jobs import FailureCause, Job, JobState
from thotto.scheduler.records import Account, AttemptView, Post, PostStatus
from thotto.scheduler.posts import post_list_tag
from thotto.engine.store.base import JobRecord, JobSearch
from thotto.store.base import POST_JOB_KIND
from thotto.usecases.posts import reschedule_failed

if TYPE_CHECKING:
    from thotto.scheduler.scheduler import Scheduler

REDRIVE_ALL_MAX = 10_000  # jobs one "redrive all matching" touches at most


class NotRetryable(Conflict):
    """Running this job again cannot succeed (409); ``action`` says what to do instead
    (``edit`` the post, ``relink`` its account)."""

    def __init__(self, message: str, *, action: str):
        super().__init__(message)
        self.action = action


# --- views -------------------------------------------------------------------------------------


class View(msgspec.Struct, kw_only=True, rename="camel"):
    """Base of the operators' views (camelCase, like the rest of the API)."""


class JobView(View):
    id: int
    queue: str
    kind: str
    state: JobState
    attempt: int
    max_attempts: int
    priority: int
    run_at: datetime
    created_at: datetime
    finished_at: datetime | None = None
    last_error: str | None = None
    failure_cause: FailureCause | None = None
    lease_owner: str | None = None


class RetryVerdict(View):
    """Whether running the job again can succeed, and if not, what to do."""

    retryable: bool
    action: str
    """``retry``, ``edit`` (the post: Reddit refused it as it is), ``relink`` (its account) or
    ``none`` (the job is not dead or waiting)."""
    reason: str


class PostSummary(View):
    id: int
    status: PostStatus
    user_id: int
    user: str
    account: str
    subreddit: str
    title: str
    scheduled_for: datetime
    reddit_url: str | None = None


class JobDetail(View):
    job: JobView
    payload: Any
    """The payload as JSON, or ``{"base64": ...}`` when it is not JSON."""
    attempts: list[AttemptView]
    post: PostSummary | None
    retry: RetryVerdict


class JobList(View):
    jobs: list[JobView]
    next_cursor: str | None = None
    """Pass back as ``cursor`` for the next page; null on the last page."""


class FailureView(View):
    """A dead job, with its post when it is a publishing job."""

    job_id: int
    queue: str
    kind: str
    reason: str | None
    cause: FailureCause | None
    failed_at: datetime | None
    attempts: int
    post: PostSummary | None
    retry: RetryVerdict


class FailureList(View):
    failures: list[FailureView]
    next_cursor: str | None = None


class Skipped(View):
    job_id: int
    reason: str


class Redriven(View):
    redriven: list[int]
    skipped: list[Skipped]


class QueueState(View):
    queue: str
    paused: bool
    paused_at: datetime | None = None
    counts: dict[str, int] = {}


class QueueList(View):
    queues: list[QueueState]


# --- reading -----------------------------------------------------------------------------------


def job_view(record: JobRecord) -> JobView:
    job = record.job
    return JobView(id=job.id, queue=job.queue, kind=job.kind, state=job.state, attempt=job.attempt,
                   max_attempts=job.max_attempts, priority=job.priority, run_at=job.run_at,
                   created_at=job.created_at, finished_at=job.finished_at, last_error=job.last_error,
                   failure_cause=record.failure_cause, lease_owner=job.lease_owner)


async def search(scheduler: "Scheduler", query: JobSearch) -> JobList:
    page = await scheduler.store.search_jobs(query)
    return JobList(jobs=[job_view(record) for record in page.jobs], next_cursor=page.next_cursor)


async def job_detail(scheduler: "Scheduler", job_id: int) -> JobDetail:
    store = scheduler.store
    record = await store.get_job_record(job_id)
    attempts = await store.attempts(job_id)
    post, account = await _post_of(scheduler, record.job)
    return JobDetail(
        job=job_view(record), payload=_payload(record.job.payload),
        attempts=[AttemptView(attempt=a.attempt, started_at=a.started_at, finished_at=a.finished_at,
                              outcome=a.outcome, error=a.error) for a in attempts],
        post=await _summary(scheduler, post, account), retry=retry_verdict(record, post, account))


async def failures(scheduler: "Scheduler", *, queue: str | None = None, cursor: str | None = None,
                   limit: int = 50) -> FailureList:
    """Dead jobs, newest first, from the store (so every process and every restart shows the
    same list, one row per job however often it was retried)."""
    page = await scheduler.store.search_jobs(JobSearch(queue=queue, state=JobState.DEAD,
                                                    cursor=cursor, limit=limit))
    views = []
    for record in page.jobs:
        job = record.job
        post, account = await _post_of(scheduler, job)
        views.append(FailureView(
            job_id=job.id, queue=job.queue, kind=job.kind, reason=job.last_error,
            cause=record.failure_cause, failed_at=job.finished_at, attempts=job.attempt,
            post=await _summary(scheduler, post, account), retry=retry_verdict(record, post, account)))
    return FailureList(failures=views, next_cursor=page.next_cursor)


def _payload(payload: bytes) -> Any:
    try:
        return msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return {"base64": base64.b64encode(payload).decode()}


async def _post_of(scheduler: "Scheduler", job: Job) -> tuple[Post | None, Account | None]:
    if job.kind != POST_JOB_KIND:
        return None, None
    try:
        post = await scheduler.store.get_post_by_job(job.id)
        return post, await scheduler.store.get_account(post.account_id)
    except NotFound:  # purged, or a job that only looks like a post's
        return None, None


async def _summary(scheduler: "Scheduler", post: Post | None, account: Account | None) -> PostSummary | None:
    if post is None or account is None:
        return None
    user = await scheduler.store.get_user(post.user_id)
    return PostSummary(id=post.id, status=post.status, user_id=user.id, user=user.name,
                       account=account.reddit_username, subreddit=post.content.subreddit,
                       title=post.content.title, scheduled_for=post.scheduled_for,
                       reddit_url=post.reddit_url)


# --- the retry rule ----------------------------------------------------------------------------


def retry_verdict(record: JobRecord, post: Post | None, account: Account | None) -> RetryVerdict:
    """Whether running the job again can succeed (see the module docstring)."""
    job = record.job
    if job.state is JobState.PENDING and job.last_error is None:
        # Running it now would run it early (a post before its time), not again.
        return RetryVerdict(retryable=False, action="none", reason=(
            "it has not failed: it runs at its time (a post is rescheduled with PATCH "
            "/api/scheduled-posts/{id})"))
    if job.state is JobState.PENDING:
        return RetryVerdict(retryable=True, action="retry",
                            reason="waiting to try again after a failure: it can run now")
    if job.state is not JobState.DEAD:
        return RetryVerdict(retryable=False, action="none", reason=(
            f"the job is {job.state.value}: only a dead job, or one waiting to try again, runs again"))
    cause = record.failure_cause
    if post is not None and cause is FailureCause.REFUSED:
        return RetryVerdict(retryable=False, action="edit", reason=(
            f"Reddit refused post {post.id} as it is ({job.last_error}); running it again would "
            f"be refused again. Edit it and reschedule it (PATCH /api/scheduled-posts/{post.id} "
            f"with a new scheduledFor, as its owner, or POST /api/monitoring/failures/{job.id}/"
            "reschedule as an admin)"))
    if cause is FailureCause.ACCOUNT and account is not None and account.needs_relink:
        return RetryVerdict(retryable=False, action="relink", reason=(
            f"Reddit refused the credentials of u/{account.reddit_username}: link the account "
            "again (thotto account link, or POST /api/accounts/link as its owner), then retry"))
    why = {FailureCause.SYSTEM: "it failed for a reason that may not repeat (an outage, a "
                                "timeout, a crash)",
           FailureCause.ACCOUNT: "its account has been linked again since"}.get(
        cause, "the operator decides: it was refused as it is")
    return RetryVerdict(retryable=True, action="retry", reason=why)


# --- acting ------------------------------------------------------------------------------------


async def retry_job(scheduler: "Scheduler", job_id: int) -> JobView:
    """Run the job now: a waiting job is moved to now, a dead one redriven, when
    :func:`retry_verdict` says it can succeed; else NotRetryable (409) saying what to do."""
    store = scheduler.store
    record = await store.get_job_record(job_id)
    post, account = await _post_of(scheduler, record.job)
    verdict = retry_verdict(record, post, account)
    if not verdict.retryable:
        if verdict.action == "none":
            raise InvalidTransition(f"Job {job_id} is not retried: {verdict.reason}", job_id=job_id,
                                    state=record.job.state.value)
        raise NotRetryable(f"Job {job_id} cannot be retried: {verdict.reason}", action=verdict.action)
    if record.job.state is JobState.PENDING:
        await store.reschedule(job_id, scheduler.clock.now())
    else:
        await store.redrive([job_id])
    await _forget_lists(scheduler, post)
    return job_view(await store.get_job_record(job_id))


async def cancel_job(scheduler: "Scheduler", job_id: int) -> JobView:
    """Cancel a waiting job; a publishing job cancels its post, by the posts' own rule (a post
    that may already be on Reddit is not cancelled)."""
    store = scheduler.store
    job = await store.get_job(job_id)
    post, _ = await _post_of(scheduler, job)
    if post is not None:
        await store.cancel_post(post.id, post.user_id)
        await _forget_lists(scheduler, post)
    else:
        await store.cancel(job_id)
    return job_view(await store.get_job_record(job_id))


async def redrive(scheduler: "Scheduler", *, job_ids: list[int] | None = None,
                  query: JobSearch | None = None) -> Redriven:
    """Redrive dead jobs: the ones named, or every dead job matching ``query`` (at most
    REDRIVE_ALL_MAX). Jobs that cannot succeed again are skipped, saying why."""
    store = scheduler.store
    if job_ids is None:
        records = await _all_dead(store, query or JobSearch())
    else:
        records = [await store.get_job_record(job_id) for job_id in dict.fromkeys(job_ids)]
    chosen, skipped, posts = [], [], []
    for record in records:
        post, account = await _post_of(scheduler, record.job)
        verdict = retry_verdict(record, post, account)
        if record.job.state is not JobState.DEAD:
            skipped.append(Skipped(job_id=record.job.id, reason=f"it is {record.job.state.value}, not dead"))
        elif not verdict.retryable:
            skipped.append(Skipped(job_id=record.job.id, reason=verdict.reason))
        else:
            chosen.append(record.job.id)
            posts.append(post)
    done = await store.redrive(chosen) if chosen else []
    skipped += [Skipped(job_id=job_id, reason="it was no longer dead")
                for job_id in chosen if job_id not in set(done)]
    for post in posts:
        await _forget_lists(scheduler, post)
    return Redriven(redriven=done, skipped=skipped)


async def _all_dead(store, query: JobSearch) -> list[JobRecord]:
    records, cursor = [], None
    while len(records) < REDRIVE_ALL_MAX:
        page = await store.search_jobs(msgspec.structs.replace(
            query, state=JobState.DEAD, cursor=cursor, limit=500))
        records += page.jobs
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return records[:REDRIVE_ALL_MAX]


async def reschedule_failed_post(scheduler: "Scheduler", job_id: int, *, scheduled_for: datetime,
                                 edits: dict[str, Any]) -> Post:
    """Edit a failed post (``edits``: PostContent fields) and schedule it again, checked as its
    owner's own edit would be (:func:`thotto.usecases.posts.reschedule_failed`)."""
    job = await scheduler.store.get_job(job_id)
    post, _ = await _post_of(scheduler, job)
    if post is None:
        raise NotFound(f"Job {job_id} publishes no post: only a failed post is edited and rescheduled")
    return await reschedule_failed(scheduler, post, scheduled_for=scheduled_for, edits=edits)


async def _forget_lists(scheduler: "Scheduler", post: Post | None) -> None:
    if post is not None:
        await scheduler.services.cache.invalidate_tags(post_list_tag(post.user_id))


# --- queues ------------------------------------------------------------------------------------


async def queues(scheduler: "Scheduler") -> QueueList:
    """Every queue that has jobs or is paused, with its counts by state."""
    counts: dict[str, dict[str, int]] = {}
    for count in await scheduler.store.counts():
        counts.setdefault(count.queue, {})[count.state.value] = count.count
    paused = {item.queue: item.paused_at for item in await scheduler.store.paused_queues()}
    return QueueList(queues=[
        QueueState(queue=name, paused=name in paused, paused_at=paused.get(name),
                   counts=counts.get(name, {}))
        for name in sorted(set(counts) | set(paused))])


async def pause(scheduler: "Scheduler", queue: str) -> QueueState:
    paused = await scheduler.store.pause_queue(queue)
    return QueueState(queue=paused.queue, paused=True, paused_at=paused.paused_at)


async def resume(scheduler: "Scheduler", queue: str) -> QueueState:
    await scheduler.store.resume_queue(queue)
    return QueueState(queue=queue, paused=False)
