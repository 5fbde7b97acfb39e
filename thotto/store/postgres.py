"""The Postgres store: asyncpg on the asyncio sidecar, for several processes sharing the work.

Every store call is one hop to the sidecar (:mod:`thotto.aio`) and, on the hot paths, one SQL
statement, so it commits on its own without BEGIN/COMMIT round trips:

* claims are one ``UPDATE ... WHERE id = ANY(ARRAY(SELECT ... FOR UPDATE SKIP LOCKED))``, so
  processes never hold the same job;
* settles and batch enqueues pass columns as arrays (``unnest``), or as one scalar when a column
  is the same for the whole batch: one statement per batch;
* concurrent single ``enqueue`` calls are coalesced into one multi-row insert per hop (group
  commit, :class:`thotto.aio.Coalescer`), each caller still getting its own result;
* wake-ups: every write that may make a job due sooner runs ``pg_notify('thotto_wakeup', ...)``
  with the earliest run_at in its own transaction; each store LISTENs on a dedicated connection
  (reconnected if it drops), skips its own notifications and wakes its own iterators directly.

"Now" is always the store's clock, passed as a parameter: SQL ``now()`` never decides a job's or a
record's time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import itertools
import logging
import operator
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import msgspec
import outcome
import trio

from thotto.aio import Coalescer, EventFeed, Sidecar, SidecarClosed, open_sidecar
from thotto.errors import (
    Conflict,
    InvalidTransition,
    NotFound,
    SchemaError,
    StoreError,
    StoreUnavailable,
    ThottoError,
    ValidationError,
)
from thotto.messages import (
    UTC,
    Account,
    ApiToken,
    Attempt,
    AttemptOutcome,
    Completed,
    Dead,
    Deferred,
    EngagementReading,
    EnqueueResult,
    ExpiredLeases,
    FailureCause,
    Job,
    LinkRequest,
    JobState,
    Media,
    MediaKind,
    MediaPage,
    Name,
    NewAccount,
    NewMedia,
    NewJob,
    NewPost,
    NewUser,
    Outcome,
    Post,
    PostContent,
    PostEngagement,
    PostPage,
    PostStatus,
    QueueCount,
    Recurrence,
    Released,
    Retry,
    Role,
    SettleResult,
    SettleStatus,
    Tier,
    TokenHash,
    User,
    UserRemoval,
    as_utc,
    title_key,
    utcnow,
    SubredditRules,
    validated,
    validated_jobs,
)
from thotto.store.lifecycle import (
    STATUS_CONDITION,
    check_changeable,
    check_revivable,
    post_error,
    post_status,
)
from thotto.store.base import (
    BROADCAST_BUFFER,
    POST_JOB_KIND,
    POST_QUEUE,
    Clock,
    JobPage,
    JobRecord,
    JobSearch,
    PausedQueue,
    QueueActivity,
    Store,
    activity_rows,
    check_broadcast,
    check_search,
    decode_media_cursor,
    encode_media_cursor,
    media_chunks,
    media_in_use,
    missed_broadcasts,
)

log = logging.getLogger("thotto.store.postgres")

T = TypeVar("T")

#: The schema version this code writes; a database with a newer one is refused (SchemaError).
MIGRATIONS = {1: "postgres_001_initial.sql", 2: "postgres_002_publishing.sql",
              3: "postgres_003_engagement_recurrence.sql", 4: "postgres_004_series_start.sql",
              5: "postgres_005_title_key.sql", 6: "postgres_006_link_requests.sql",
              7: "postgres_007_removed_users.sql", 8: "postgres_008_operations.sql",
              9: "postgres_009_media.sql"}
# Numbers are taken by branches as they start, so they may have gaps: apply them in order.
SCHEMA_VERSION = max(MIGRATIONS)
#: Rows per statement when a migration backfills a column computed in Python.
BACKFILL_BATCH = 5000
SQL_DIR = Path(__file__).with_name("sql")
_LINK_REQUEST_COLS = ("state_hash, user_id, secret_hash, created_at, expires_at, used_at, held_code, "
                      "verifier_hash")
#: Expired link requests are kept this long (to say "expired" rather than "unknown"), then dropped.
LINK_REQUEST_MEMORY = timedelta(days=1)
#: pg_advisory_xact_lock key serialising migrations across processes ("thotto" in hex-ish).
MIGRATION_LOCK = 0x7407_7000_5C4E_3A01
WAKEUP_CHANNEL = "thotto_wakeup"
#: Store.broadcast's channel: "<instance> <base64 message>".
BROADCAST_CHANNEL = "thotto_broadcast"
DEADLOCK_RETRIES = 3
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
EXPIRED_ERROR = "lease expired: the worker crashed, hung or lost its connection"

_STATES = {state.value: state for state in JobState}
_OUTCOMES = {item.value: item for item in AttemptOutcome}
_REQUEUES = frozenset({"retry", "deferred", "released"})

# --- SQL -------------------------------------------------------------------------------------

_JOB_COLS = (
    "id, queue, kind, payload, priority, run_at, state, attempt, max_attempts, dedupe_key, "
    "owner, lease_until, created_at, finished_at, last_error"
)

_UNNEST_JOBS = (
    "unnest($1::text[], $2::text[], $3::bytea[], $4::int[], $5::timestamptz[], $6::int[], "
    "$7::text[], $8::timestamptz[])"
)


# Wake-ups ride in the statement that makes jobs due: a MATERIALIZED CTE runs pg_notify exactly
# once, joined to the statement's input so it cannot be skipped; the notification is delivered at
# commit, with the write. (A statement trigger with a transition table would catch every write,
# but copies every inserted or claimed row for it.) The payload, computed by the store, is
# "<store instance> <earliest run_at in microseconds since the epoch>".
def _notify_cte(param: int) -> str:
    return f"n AS MATERIALIZED (SELECT pg_notify('{WAKEUP_CHANNEL}', ${param}::text))"


SQL_NOTIFY = f"SELECT pg_notify('{WAKEUP_CHANNEL}', $1::text)"

# Without dedupe keys: a plain INSERT ... SELECT. A column whose values are all equal in the batch
# (often queue, kind, priority, max_attempts, and run_at/created_at when "now") is sent as one
# scalar instead of an array: array elements cost 0.3-1.5 µs each to encode and decode here, as
# much as inserting the row. RETURNING yields rows in insertion order, which is the scan order of
# unnest (or generate_series), i.e. input order.
_INSERT_COLUMNS = (
    ("queue", "text"),
    ("kind", "text"),
    ("payload", "bytea"),
    ("priority", "int"),
    ("run_at", "timestamptz"),
    ("max_attempts", "int"),
    ("created_at", "timestamptz"),
)


@functools.lru_cache(maxsize=None)
def _insert_sql(scalar: tuple[bool, ...]) -> str:
    """The insert statement for a batch whose columns are scalars (True) or arrays (False).

    Parameters: one per column in ``_INSERT_COLUMNS`` order, then the row count if every column
    is a scalar, then the NOTIFY payload.
    """
    values, arrays, names = [], [], []
    number = 0
    for (name, type_), is_scalar in zip(_INSERT_COLUMNS, scalar, strict=True):
        number += 1
        if is_scalar:
            values.append(f"${number}::{type_}")
        else:
            values.append(f"t.{name}")
            arrays.append(f"${number}::{type_}[]")
            names.append(name)
    if arrays:
        source = f"unnest({', '.join(arrays)}) AS t({', '.join(names)})"
    else:
        number += 1
        source = f"generate_series(1, ${number}::int) AS t"
    return f"""
WITH {_notify_cte(number + 1)}
INSERT INTO jobs (queue, kind, payload, priority, run_at, max_attempts, created_at)
SELECT {', '.join(values)} FROM {source} CROSS JOIN n
RETURNING id
"""


# With dedupe keys: ids are drawn up front so every input row can be matched to its outcome.
# Rows are inserted in input order, so within the batch the first job with a key wins and later
# ones conflict with it. The lateral join finds pre-existing live jobs (the statement's snapshot
# does not see rows the statement itself inserted: those are resolved in Python).
SQL_INSERT_JOBS_DEDUPE = f"""
WITH {_notify_cte(9)}, u AS MATERIALIZED (
    SELECT nextval('jobs_id_seq'::regclass) AS id, t.*
    FROM {_UNNEST_JOBS}
         WITH ORDINALITY AS t(queue, kind, payload, priority, run_at, max_attempts, dedupe_key,
                              created_at, ord)
         CROSS JOIN n
), ins AS (
    INSERT INTO jobs (id, queue, kind, payload, priority, run_at, max_attempts, dedupe_key,
                      created_at)
    SELECT id, queue, kind, payload, priority, run_at, max_attempts, dedupe_key, created_at
    FROM u ORDER BY ord
    ON CONFLICT (queue, dedupe_key)
        WHERE state IN ('pending', 'processing') AND dedupe_key IS NOT NULL
        DO NOTHING
    RETURNING id
)
SELECT u.id, u.run_at, ins.id IS NOT NULL AS created, e.id AS existing_id,
       e.run_at AS existing_run_at
FROM u
LEFT JOIN ins ON ins.id = u.id
LEFT JOIN LATERAL (
    SELECT j.id, j.run_at FROM jobs j
    WHERE ins.id IS NULL AND j.queue = u.queue AND j.dedupe_key = u.dedupe_key
      AND j.state IN ('pending', 'processing')
    LIMIT 1
) e ON true
ORDER BY u.ord
"""

SQL_FIND_LIVE_BY_KEY = """
SELECT id, run_at FROM jobs
WHERE queue = $1 AND dedupe_key = $2 AND state IN ('pending', 'processing')
"""

# The ids go through ARRAY(...) so the update finds its rows by primary key whatever the
# planner believes about the table (a join with a CTE may hash-join against a full scan). The
# rows are locked by the inner SELECT (which rechecks its WHERE on the newest row version), so the
# outer UPDATE needs no state condition of its own.
#
# The claimed jobs come back as one row of arrays, one per column, in claim order: a row per job
# cost ~3 µs a job of this process's CPU to decode into records and Jobs on the sidecar, against
# ~1 µs for the arrays (zipped into Jobs on the Trio side, :func:`_claimed_jobs`). A JSON document
# instead cost the server more than it saved here.
# The queue monitor's snapshot (Store.queue_activity; names as activity_rows in base.py).
_ACTIVITY = """
SELECT queue, CASE WHEN run_at <= $1 THEN 'due' ELSE 'delayed' END, count(*)
  FROM jobs WHERE state = 'pending' GROUP BY 1, 2
UNION ALL
SELECT queue, state, count(*) FROM jobs
 WHERE finished_at >= $2 AND state IN ('completed', 'dead') GROUP BY 1, 2
UNION ALL
SELECT j.queue, 'attempt_' || a.outcome, count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id
 WHERE a.finished_at >= $2 AND a.outcome IN ('retry', 'dead', 'expired') GROUP BY 1, 2
UNION ALL
SELECT j.queue, 'attempt_refused', count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id
 WHERE a.finished_at >= $2 AND a.outcome = 'dead' AND j.state = 'dead'
   AND j.failure_cause IN ('refused', 'account') GROUP BY 1
"""
_ACTIVITY_DURATIONS = """
SELECT queue, extract(epoch FROM finished_at - started_at)::float8 FROM jobs
 WHERE finished_at >= $1 AND state = 'completed' AND started_at IS NOT NULL
 ORDER BY finished_at DESC LIMIT $2
"""
# Jobs of paused queues are never claimed: the claim reads paused_queues in its own statement,
# so a pause committed in any process holds for every claim that starts after it. The list is an
# InitPlan, read once per statement; with nothing paused, each row is compared with an empty array.
_NOT_PAUSED = "AND queue <> ALL(ARRAY(SELECT queue FROM paused_queues))"
_NEXT_DUE = (
    f"SELECT run_at FROM jobs WHERE state = 'pending' {_NOT_PAUSED} {{queues}} "
    "ORDER BY run_at, priority DESC, id LIMIT 1"
)
_CLAIM = """
WITH claimed AS (
    UPDATE jobs j
    SET state = 'processing', attempt = j.attempt + 1, owner = $3, lease_until = $4,
        started_at = $5
    WHERE j.id = ANY(ARRAY(
        SELECT id FROM jobs
        WHERE state = 'pending' AND run_at <= $1 {not_paused} {queues}
        ORDER BY run_at, priority DESC, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING j.id, j.queue, j.kind, j.payload, j.priority, j.run_at, j.attempt,
              j.max_attempts, j.dedupe_key, j.created_at, j.last_error
)
SELECT array_agg(id), array_agg(queue), array_agg(kind), array_agg(payload), array_agg(priority),
       array_agg(run_at), array_agg(attempt), array_agg(max_attempts), array_agg(dedupe_key),
       array_agg(created_at), array_agg(last_error)
FROM (SELECT * FROM claimed ORDER BY run_at, priority DESC, id) c
"""
SQL_CLAIM = _CLAIM.format(queues="", not_paused=_NOT_PAUSED)
SQL_CLAIM_QUEUES = _CLAIM.format(queues="AND queue = ANY($6::text[])", not_paused=_NOT_PAUSED)

SQL_HEARTBEAT = """
UPDATE jobs SET lease_until = $3
WHERE id = ANY($2::bigint[]) AND state = 'processing' AND owner = $1
RETURNING id
"""

# One statement settles a whole batch of outcomes. Kinds: completed, retry, dead, deferred,
# released. Only outcomes matching (processing, owner, attempt) apply; the rest are checked for an
# identical earlier record (ALREADY) against the statement's snapshot, i.e. before this update.
_SETTLE = """
WITH {notify} u AS (
    SELECT u.* FROM unnest($3::bigint[], $4::int[], $5::text[], $6::timestamptz[], $7::text[],
                           $8::text[])
        WITH ORDINALITY AS u(id, attempt, kind, run_at, error, cause, ord) {join}
), upd AS (
    UPDATE jobs j SET
        state = CASE
            WHEN u.kind IN ('completed', 'dead') THEN u.kind
            WHEN u.kind = 'retry' AND j.attempt >= j.max_attempts THEN 'dead'
            ELSE 'pending' END,
        attempt = CASE WHEN u.kind IN ('deferred', 'released') THEN j.attempt - 1
                       ELSE j.attempt END,
        run_at = CASE WHEN u.kind IN ('retry', 'deferred') THEN u.run_at
                      WHEN u.kind = 'released' THEN $2
                      ELSE j.run_at END,
        lease_until = NULL,
        finished_at = CASE
            WHEN u.kind IN ('completed', 'dead') THEN $2
            WHEN u.kind = 'retry' AND j.attempt >= j.max_attempts THEN $2
            END,
        last_error = CASE WHEN u.kind IN ('retry', 'dead') THEN u.error ELSE j.last_error END,
        failure_cause = CASE
            WHEN u.kind = 'dead' THEN u.cause
            WHEN u.kind = 'retry' AND j.attempt >= j.max_attempts THEN 'system'
            END
    FROM u
    WHERE j.id = u.id AND j.attempt = u.attempt AND j.state = 'processing' AND j.owner = $1
    RETURNING u.ord, u.kind, u.error, j.id, j.state, j.attempt AS new_attempt, j.run_at,
              j.started_at
), hist AS (
    INSERT INTO job_attempts (job_id, attempt, owner, started_at, finished_at, outcome, error)
    SELECT upd.id, u.attempt, $1, upd.started_at, $2,
           CASE WHEN upd.kind = 'retry' AND upd.state = 'dead' THEN 'dead' ELSE upd.kind END,
           upd.error
    FROM upd JOIN u ON u.ord = upd.ord
    WHERE upd.kind <> 'completed'
)
SELECT ord, 'ok' AS status, CASE WHEN state = 'pending' THEN run_at END AS wake FROM upd
UNION ALL
SELECT u.ord,
       CASE WHEN
           (u.kind = 'completed' AND EXISTS (
               SELECT 1 FROM jobs j
               WHERE j.id = u.id AND j.state = 'completed' AND j.attempt = u.attempt
                 AND j.owner = $1))
           OR (u.kind <> 'completed' AND EXISTS (
               SELECT 1 FROM job_attempts h
               WHERE h.job_id = u.id AND h.attempt = u.attempt AND h.owner = $1
                 AND (h.outcome = u.kind OR (u.kind = 'retry' AND h.outcome = 'dead'))))
       THEN 'already' ELSE 'lease_lost' END,
       NULL
FROM u WHERE u.ord NOT IN (SELECT ord FROM upd)
"""
SQL_SETTLE = _SETTLE.format(notify="", join="")
SQL_SETTLE_NOTIFY = _SETTLE.format(notify=_notify_cte(9) + ",", join="CROSS JOIN n")

# The hot path: a batch of Completed outcomes only, one row back: how many applied and, only if
# not all did, the ids that did (the rest are sorted into ALREADY and LEASE_LOST by
# SQL_COMPLETED_ALREADY, rarely). ``$4`` holds each job's key id * 2^20 + attempt. The rows are
# found through the primary key: with ``state = 'processing'`` written plainly the planner may
# pick the small partial index jobs_lease instead, and scan it whole (dead entries included, so
# more with every batch until a vacuum) for each batch; once the table was analysed that plan
# made a batch of 1,000 take ~140 ms. The state is compared to an InitPlan value, which the
# planner cannot match to the index predicate.
SQL_COMPLETE = """
WITH done AS (
    UPDATE jobs j SET state = 'completed', lease_until = NULL, finished_at = $2
    WHERE j.id = ANY($3::bigint[]) AND j.state = (SELECT 'processing'::text)
      AND j.owner = $1 AND j.id * 1048576 + j.attempt = ANY($4::bigint[])
    RETURNING j.id
)
SELECT count(*), CASE WHEN count(*) < cardinality($3::bigint[]) THEN array_agg(id) END
FROM done
"""
KEY_SHIFT = 1 << 20  # id * KEY_SHIFT + attempt keys a job's attempt (attempts stay below 1000)
MAX_KEYED_ID = 1 << 42  # so that every key fits in a bigint
SQL_COMPLETED_ALREADY = """
SELECT u.ord FROM unnest($2::bigint[], $3::int[]) WITH ORDINALITY AS u(id, attempt, ord)
JOIN jobs j ON j.id = u.id
WHERE j.state = 'completed' AND j.attempt = u.attempt AND j.owner = $1
"""

SQL_RELEASE_EXPIRED = """
WITH upd AS (
    UPDATE jobs j SET
        state = CASE WHEN j.attempt >= j.max_attempts THEN 'dead' ELSE 'pending' END,
        run_at = CASE WHEN j.attempt >= j.max_attempts THEN j.run_at ELSE $1 END,
        lease_until = NULL,
        finished_at = CASE WHEN j.attempt >= j.max_attempts THEN $1 END,
        last_error = CASE WHEN j.attempt >= j.max_attempts THEN $2 || '; no attempts left'
                          ELSE $2 END,
        failure_cause = CASE WHEN j.attempt >= j.max_attempts THEN 'system' END
    WHERE j.id = ANY(ARRAY(
        SELECT id FROM jobs
        WHERE state = 'processing' AND lease_until < $1
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING j.id, j.state, j.attempt, j.owner, j.started_at
), hist AS (
    INSERT INTO job_attempts (job_id, attempt, owner, started_at, finished_at, outcome, error)
    SELECT id, attempt, owner, started_at, $1, 'expired',
           CASE WHEN state = 'dead' THEN $2 || '; no attempts left' ELSE $2 END FROM upd
)
SELECT id, state FROM upd ORDER BY id
"""

SQL_GET_JOB = f"SELECT {_JOB_COLS} FROM jobs WHERE id = $1"
SQL_GET_JOB_FOR_UPDATE = f"SELECT {_JOB_COLS} FROM jobs WHERE id = $1 FOR UPDATE"

SQL_REDRIVE = """
UPDATE jobs j SET state = 'pending', attempt = 0, run_at = $2, lease_until = NULL,
                  finished_at = NULL, failure_cause = NULL
WHERE j.id = ANY($1::bigint[]) AND j.state = 'dead'
  AND (j.dedupe_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM jobs o
        WHERE o.queue = j.queue AND o.dedupe_key = j.dedupe_key
          AND o.state IN ('pending', 'processing')))
RETURNING j.id
"""

SQL_PURGE = """
DELETE FROM jobs
WHERE state IN ('completed', 'dead', 'cancelled') AND finished_at < $1
"""

_USER_COLS = "id, name, tier, role, created_at"
_TOKEN_COLS = "id, user_id, name, created_at, revoked_at"
# Removed users (see Store.remove_user) are skipped by every user look-up.
_LIVE = "removed_at IS NULL"
_LIVE_USER = "SELECT 1 FROM users WHERE id = $1 AND removed_at IS NULL"
_ACCOUNT_COLS = (
    "id, user_id, reddit_username, refresh_token_encrypted, scopes, needs_relink, created_at"
)
_POST_SELECT = """
SELECT p.id, p.user_id, p.account_id, p.content, p.scheduled_for, j.state, p.job_id,
       p.reddit_id, p.reddit_url, j.last_error, p.recurrence, p.created_at, p.updated_at,
       p.armed_at
FROM posts p JOIN jobs j ON j.id = p.job_id
"""


# --- errors ----------------------------------------------------------------------------------

_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08: connection exceptions
    asyncpg.exceptions.OperatorInterventionError,  # 57: admin/crash shutdown, cannot connect now
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _UNAVAILABLE):
        return True
    # asyncpg says "connection is closed" / "connection was closed in the middle of operation"
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, without user or password, for messages."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "<unparseable DSN>"
    return f"{host}:{port}{parts.path or '/'}"


# --- small helpers -----------------------------------------------------------------------------


def _claimed_jobs(columns: Any, owner: str, lease_until: datetime) -> list[Job]:
    """The Job records of a claim's row of column arrays (see _CLAIM), built at C speed, in
    claim order (the arrays come from a sorted subquery, which Postgres keeps in practice but
    does not promise: checked, and sorted if ever needed)."""
    if columns[0] is None:
        return []
    n = len(columns[0])
    jobs = list(map(Job, *columns[:6], itertools.repeat(JobState.PROCESSING, n), *columns[6:9],
                    itertools.repeat(owner, n), itertools.repeat(lease_until, n), columns[9],
                    itertools.repeat(None, n), columns[10]))
    order = list(zip(columns[5], map(operator.neg, columns[4]), columns[0]))
    if not all(map(operator.le, order, itertools.islice(order, 1, None))):
        jobs.sort(key=lambda job: (job.run_at, -job.priority, job.id))
    return jobs


def _job(r: Any) -> Job:
    state = _STATES[r[6]]
    held = state is JobState.PROCESSING
    return Job(
        r[0], r[1], r[2], r[3], r[4], r[5], state, r[7], r[8], r[9],
        r[10] if held else None, r[11] if held else None, r[12], r[13], r[14],
    )  # fmt: skip


def _user(r: Any) -> User:
    return User(r[0], r[1], Tier(r[2]), Role(r[3]), r[4])


def _token(r: Any) -> ApiToken:
    return ApiToken(r[0], r[1], r[2], r[3], r[4])


def _link_request(r: Any) -> LinkRequest:
    return LinkRequest(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7])


def _check_hash(value: Any, field: str) -> str:
    try:
        return msgspec.convert(value, TokenHash)
    except msgspec.ValidationError as exc:
        raise ValidationError(f"{field}: {exc}", field=field) from exc


def _check_str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{field} must be a string, got {type(value).__name__}", field=field)
    return value


def _account(r: Any) -> Account:
    return Account(r[0], r[1], r[2], r[3], r[4], r[5], r[6])


_content_decoder = msgspec.json.Decoder(PostContent)
_recurrence_decoder = msgspec.json.Decoder(Recurrence)


async def _link_media(conn: Any, post_id: int, user_id: int, content: PostContent) -> None:
    """Record which uploads the post uses (so they are not deleted while it may publish), each
    checked to be one of the post's user's."""
    await conn.execute("DELETE FROM post_media WHERE post_id = $1", post_id)
    for position, ref in enumerate(content.media):
        owner = await conn.fetchval("SELECT user_id FROM media WHERE id = $1 AND ready", ref.media_id)
        if owner != user_id:
            raise NotFound(f"Media {ref.media_id} is not one of user {user_id}'s uploads")
        await conn.execute("INSERT INTO post_media (post_id, media_id, position) VALUES ($1, $2, $3)",
                           post_id, ref.media_id, position)


def _post(r: Any) -> Post:
    status = post_status(_STATES[r[5]], r[13], r[7])
    return Post(
        id=r[0],
        user_id=r[1],
        account_id=r[2],
        content=_content_decoder.decode(r[3]),
        scheduled_for=r[4],
        status=status,
        job_id=r[6],
        reddit_id=r[7],
        reddit_url=r[8],
        error=post_error(status, r[9]),
        recurrence=_recurrence_decoder.decode(r[10]) if r[10] is not None else None,
        created_at=r[11],
        updated_at=r[12],
        armed_at=r[13],
    )


_MEDIA_COLS = "id, user_id, kind, width, height, bytes, sha256, removed::text, created_at"
_removed_decoder = msgspec.json.Decoder(list[str])
#: Posts not finished (their job pending or processing) that link the media.
_SQL_MEDIA_LIVE_POSTS = """
    SELECT pm.post_id FROM post_media pm JOIN posts p ON p.id = pm.post_id
    JOIN jobs j ON j.id = p.job_id
    WHERE pm.media_id = $1 AND j.state IN ('pending', 'processing') ORDER BY pm.post_id"""
#: Unused media created before $1 and unfinished uploads started before $2, a batch at a time
#: (their chunks go with them, ON DELETE CASCADE); SKIP LOCKED lets processes purge together.
_SQL_PURGE_MEDIA = """
    DELETE FROM media WHERE id IN (
        SELECT m.id FROM media m
        WHERE (m.ready AND m.created_at < $1
               AND NOT EXISTS (SELECT 1 FROM post_media pm WHERE pm.media_id = m.id))
           OR (NOT m.ready AND m.created_at < $2)
        LIMIT $3 FOR UPDATE SKIP LOCKED)"""
MEDIA_PURGE_BATCH = 50


def _media(r: Any) -> Media:
    return Media(r[0], r[1], MediaKind(r[2]), r[3], r[4], r[5], r[6], _removed_decoder.decode(r[7]),
                 r[8])


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


Owner = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
ClaimLimit = Annotated[int, msgspec.Meta(ge=0, le=100_000)]
LeaseSeconds = Annotated[float, msgspec.Meta(gt=0, le=366 * 86400)]
TokenName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
RedditId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


def _convert(value: Any, type_: Any, field: str) -> Any:
    try:
        return msgspec.convert(value, type_)
    except msgspec.ValidationError as exc:
        raise ValidationError(f"{field}: {exc}", field=field) from exc


def _check_owner(owner: str) -> str:
    return _convert(owner, Owner, "owner")


def _check_lease(lease_seconds: float) -> timedelta:
    return timedelta(seconds=_convert(lease_seconds, LeaseSeconds, "lease_seconds"))


def _check_ids(ids: Sequence[int], field: str = "job_ids") -> list[int]:
    out = list(ids)
    for value in out:
        if type(value) is not int:
            raise ValidationError(f"{field} must be integers, got {value!r}", field=field)
    return out


def _check_token_hash(token_hash: str) -> str:
    try:
        return msgspec.convert(token_hash, TokenHash)
    except msgspec.ValidationError as exc:
        raise ValidationError(f"token_hash: {exc}", field="token_hash") from exc


_OUTCOME_KIND = {
    Completed: "completed",
    Retry: "retry",
    Dead: "dead",
    Deferred: "deferred",
    Released: "released",
}


def _outcome_row(item: Outcome) -> tuple[int, int, str, datetime | None, str | None, str | None]:
    """(job id, attempt, kind, run_at, error, failure cause) of an outcome."""
    kind = _OUTCOME_KIND.get(type(item))
    if kind is None:
        raise ValidationError(f"Not an outcome: {item!r}", field="outcomes")
    if kind == "completed":
        # The hot path: a type check instead of a full validation per outcome.
        if type(item.job_id) is not int or type(item.attempt) is not int:
            validated(item)
        return item.job_id, item.attempt, kind, None, None, None
    item = validated(item)
    if kind == "retry" or kind == "deferred":
        error = item.error if kind == "retry" else item.reason
        return item.job_id, item.attempt, kind, as_utc(item.run_at), error, None
    if kind == "dead":
        return item.job_id, item.attempt, kind, None, item.error, item.cause.value
    return item.job_id, item.attempt, kind, None, None, None


class _JobColumns:
    """Jobs to insert as columns (the statement takes one array per column)."""

    __slots__ = ("queue", "kind", "payload", "priority", "run_at", "max_attempts", "dedupe_key",
                 "created_at")  # fmt: skip

    def __init__(self, *columns: Any):
        (self.queue, self.kind, self.payload, self.priority, self.run_at, self.max_attempts,
         self.dedupe_key, self.created_at) = columns  # fmt: skip

    @classmethod
    def of_jobs(cls, jobs: Sequence[NewJob], now: datetime) -> _JobColumns:
        """Validated jobs enqueued together at ``now``."""
        run_at = [
            now if job.run_at is None
            else job.run_at if job.run_at.tzinfo is UTC else as_utc(job.run_at)
            for job in jobs
        ]  # fmt: skip
        return cls(
            [job.queue for job in jobs],
            [job.kind for job in jobs],
            [job.payload for job in jobs],
            [job.priority for job in jobs],
            run_at,
            [job.max_attempts for job in jobs],
            [job.dedupe_key for job in jobs],
            now,
        )

    @classmethod
    def of_rows(cls, rows: list[tuple[Any, ...]]) -> _JobColumns:
        """Rows as single enqueues build them, each with its own created_at."""
        columns = [list(column) for column in zip(*rows)]
        created_at = columns[7]
        if created_at.count(created_at[0]) == len(created_at):
            columns[7] = created_at[0]
        return cls(*columns)

    def insert_statement(self) -> tuple[str, list[Any]]:
        """The statement (see :func:`_insert_sql`) and its arguments, less the NOTIFY payload."""
        columns = (self.queue, self.kind, self.payload, self.priority, self.run_at,
                   self.max_attempts, self.created_at)  # fmt: skip
        count = len(self.run_at)
        scalar = []
        args: list[Any] = []
        for column in columns:
            if not isinstance(column, list):
                scalar.append(True)
                args.append(column)
            elif column.count(column[0]) == count:
                scalar.append(True)
                args.append(column[0])
            else:
                scalar.append(False)
                args.append(column)
        if all(scalar):
            args.append(count)
        return _insert_sql(tuple(scalar)), args


def _affected(status: str) -> int:
    """The row count of a command status such as ``UPDATE 3``."""
    return int(status.split()[-1])


# --- wake-ups ------------------------------------------------------------------------------------


class _Wakeups(EventFeed[datetime]):
    """One ``wakeups()`` iterator: a one-slot feed keeping the earliest time, registered with its
    store from creation (not first iteration), so no wake-up is lost while it is open."""

    def __init__(self, store: PostgresStore):
        super().__init__(store._sidecar.trio_token, max_buffer=1, merge=min)
        self._store = store
        if store._closed:
            self.close()
        else:
            store._feeds.add(self)

    def close(self) -> None:
        self._store._feeds.discard(self)
        super().close()


# --- the store -----------------------------------------------------------------------------------


class PostgresStore(Store):
    """The :class:`~thotto.store.base.Store` on Postgres (asyncpg via the asyncio sidecar).

    Open it with :func:`open_postgres_store`, which also closes it: background tasks stop, the
    pool and the listener connection close, and a sidecar it started is stopped; closing is
    shielded from cancellation and idempotent.
    """

    name = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        sidecar: Sidecar,
        clock: Clock = utcnow,
        pool_size: int = 10,
        enqueue_flushers: int = 1,
    ):
        super().__init__(clock)
        self._dsn = dsn
        self._where = describe_dsn(dsn)
        self._sidecar = sidecar
        self._pool_size = pool_size
        self._instance = uuid.uuid4().hex
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._feeds: set[_Wakeups] = set()
        self._broadcast_feeds: set[EventFeed[bytes | None]] = set()
        self._job_shapes: set[tuple[Any, ...]] = set()
        self._listen_task: asyncio.Task[None] | None = None
        self._closed = False
        self._close_done: trio.Event | None = None
        # Concurrent single enqueues share one multi-row insert per hop (group commit).
        self._enqueuer: Coalescer[tuple[Any, ...], EnqueueResult] = Coalescer(
            sidecar,
            self._insert_rows,
            max_flushes=enqueue_flushers,
            retry_singly=lambda error: not _is_unavailable(error),
        )

    # --- plumbing -----------------------------------------------------------------------

    async def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """One hop to the sidecar, with driver errors wrapped in thotto.errors."""
        if self._closed:
            raise StoreUnavailable("The Postgres store is closed")
        for retry in range(DEADLOCK_RETRIES, -1, -1):
            try:
                return await self._sidecar.run(fn, *args)
            except SidecarClosed as exc:
                raise StoreUnavailable(f"The Postgres store is closed: {exc}") from exc
            except ThottoError:
                raise
            except asyncpg.DeadlockDetectedError as exc:
                # Two batches locking shared rows in different orders (a heartbeat and a settle
                # of one owner, say): Postgres aborted this one's transaction, so it is clean to
                # run again.
                if not retry:
                    raise self._wrap(exc) from exc
                log.info("Deadlock detected in %s; retrying", getattr(fn, "__name__", fn))
            except Exception as exc:
                raise self._wrap(exc) from exc
        raise AssertionError("unreachable")

    def _wrap(self, exc: BaseException) -> StoreError:
        """The StoreError for a driver error (StoreUnavailable when the database is out of
        reach); a new instance of a Thotto error (callers may share the original)."""
        if isinstance(exc, SidecarClosed):
            return StoreUnavailable(f"The Postgres store is closed: {exc}")
        if isinstance(exc, ThottoError):
            try:
                return type(exc)(str(exc))  # type: ignore[return-value]
            except TypeError:
                return StoreError(str(exc))
        if _is_unavailable(exc):
            return StoreUnavailable(
                f"Postgres at {self._where} is unavailable ({type(exc).__name__}: {exc}); "
                "the operation may be retried"
            )
        return StoreError(f"Postgres error ({type(exc).__name__}): {exc}")

    def _wake_from_loop(self, when: datetime | None) -> None:
        """Loop thread: wake this store's iterators. Queued to Trio before the reply of the call
        that made the write, so a caller sees its wake-up as soon as its call returns."""
        if when is not None:
            self._sidecar.run_in_trio(self._dispatch_wake, when)

    def _payload(self, when: datetime) -> str:
        """The NOTIFY payload announcing ``when``: this store's instance and the time in µs."""
        return f"{self._instance} {(when - EPOCH) // _MICROSECOND}"

    def _dispatch_wake(self, when: datetime) -> None:
        for feed in list(self._feeds):
            feed.put_nowait(when)

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        assert self._pool is not None
        return await self._pool.fetch(sql, *args)

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        assert self._pool is not None
        return await self._pool.fetchrow(sql, *args)

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        assert self._pool is not None
        return await self._pool.fetchval(sql, *args)

    async def _execute(self, sql: str, *args: Any) -> str:
        assert self._pool is not None
        return await self._pool.execute(sql, *args)

    # --- lifecycle ----------------------------------------------------------------------

    def _connect_kwargs(self, application_name: str = "thotto") -> dict[str, Any]:
        return {
            "timeout": 10,
            # Room for every shape of batch insert (see _insert_sql) besides the rest.
            "statement_cache_size": 300,
            "server_settings": {
                "application_name": application_name,
                # JIT compiling a batch statement costs more than it saves here.
                "jit": "off",
                # With stale statistics (a queue table grows from empty in seconds) the planner
                # picks bitmap scans that read and sort every due job to claim a thousand; the
                # ordered index scans our statements are written for are always fine.
                "enable_bitmapscan": "off",
            },
        }

    async def _open_in_loop(self) -> None:
        """Loop thread: create the pool, migrate, connect the listener."""
        kwargs = self._connect_kwargs()
        pool = asyncpg.create_pool(
            self._dsn,
            min_size=min(2, self._pool_size),
            max_size=self._pool_size,
            reset=_keep_session,
            **kwargs,
        )
        try:
            await pool  # connects min_size connections; cancellable
            async with pool.acquire() as conn:
                await migrate(conn)
            self._listener = await self._connect_listener()
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool
        self._listen_task = asyncio.get_running_loop().create_task(self._listen_forever())

    async def _connect_listener(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self._dsn, **self._connect_kwargs("thotto-listener"))
        try:
            await conn.add_listener(WAKEUP_CHANNEL, self._on_notify)
            await conn.add_listener(BROADCAST_CHANNEL, self._on_broadcast)
        except BaseException:
            conn.terminate()
            raise
        return conn

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        """Loop thread: a NOTIFY from some store's write; skip our own (woken directly)."""
        instance, _, micros = payload.partition(" ")
        if instance == self._instance:
            return
        try:
            when = EPOCH + timedelta(microseconds=int(micros))
        except ValueError:
            log.warning("Ignoring malformed wake-up notification %r", payload)
            return
        self._sidecar.run_in_trio(self._dispatch_wake, when)

    async def _listen_forever(self) -> None:
        """Loop thread: keep the LISTEN connection alive; reconnect (with backoff) when it drops.

        Notifications sent while it was down are lost, so after reconnecting it wakes the
        iterators with the earliest pending run_at, which covers them.
        """
        delay = 0.05
        while True:
            conn = self._listener
            try:
                if conn is None or conn.is_closed():
                    self._listener = None
                    conn = self._listener = await self._connect_listener()
                    due = await conn.fetchval("SELECT min(run_at) FROM jobs WHERE state = 'pending'")
                    log.info("Reconnected the wake-up listener to %s", self._where)
                    self._wake_from_loop(due)
                    # Broadcasts sent while it was down are lost: say so.
                    self._sidecar.run_in_trio(self._dispatch_broadcast, None)
                delay = 0.05
                await _wait_closed(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged; the loop retries
                log.warning("Wake-up listener on %s failed (%s); retrying in %.2fs", self._where,
                            exc, delay)
                if conn is not None:
                    conn.terminate()
                self._listener = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _close_in_loop(self) -> None:
        task, self._listen_task = self._listen_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.close(), 2)
            listener.terminate()
        pool, self._pool = self._pool, None
        if pool is not None:
            await _close_pool(pool)

    async def _open(self) -> None:
        try:
            await self._sidecar.run(self._open_in_loop)
        except ThottoError:
            raise
        except Exception as exc:
            raise StoreUnavailable(
                f"Cannot open the Postgres store at {self._where}: {type(exc).__name__}: {exc}. "
                "Check that the server is running and the URL (host, port, database, user) is "
                "right."
            ) from exc

    async def aclose(self) -> None:
        """Stop background tasks, end wake-up iterators, close the listener and the pool.

        Idempotent; shielded, so it completes when the caller is cancelled. A sidecar opened by
        :func:`open_postgres_store` is stopped by it after this.
        """
        with trio.CancelScope(shield=True):
            if self._close_done is not None:
                await self._close_done.wait()
                return
            self._close_done = trio.Event()
            self._closed = True
            try:
                await self._enqueuer.aclose()
                for feed in list(self._feeds):
                    feed.close()
                for broadcasts in list(self._broadcast_feeds):
                    broadcasts.close()
                if self._sidecar.running:
                    with contextlib.suppress(SidecarClosed):
                        await self._sidecar.run(self._close_in_loop)
            finally:
                self._close_done.set()

    # --- enqueueing -----------------------------------------------------------------------

    def _validated_job(self, job: NewJob) -> NewJob:
        """validated(job), skipping the full check for a shape of job seen before.

        Hot callers enqueue the same queue/kind/limits over and over; as in
        :func:`~thotto.messages.validated_jobs`, each distinct shape is validated fully once (a
        few µs), then only the per-job checks remain.
        """
        if type(job) is not NewJob:
            return validated(job)
        shape = (job.queue, job.kind, job.priority, job.max_attempts, job.dedupe_key,
                 type(job.payload), job.run_at is None or job.run_at.tzinfo is not None)  # fmt: skip
        if shape not in self._job_shapes:
            job = validated(job)
            if len(self._job_shapes) >= 4096:
                self._job_shapes.clear()
            self._job_shapes.add(shape)
        return job

    async def enqueue(self, job: NewJob) -> EnqueueResult:
        job = self._validated_job(job)
        now = self.now()
        run_at = now if job.run_at is None else as_utc(job.run_at)
        row = (job.queue, job.kind, job.payload, job.priority, run_at, job.max_attempts,
               job.dedupe_key, now)  # fmt: skip
        if self._closed:
            raise StoreUnavailable("The Postgres store is closed")
        try:
            result = await self._enqueuer.submit(row)
        except SidecarClosed as exc:
            raise StoreUnavailable(f"The Postgres store is closed: {exc}") from exc
        if isinstance(result, outcome.Error):
            raise self._wrap(result.error) from result.error
        return result.unwrap()

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> list[EnqueueResult]:
        jobs = list(jobs)
        if not jobs:
            await trio.lowlevel.checkpoint()
            return []
        validated_jobs(jobs)
        return await self._run(self._insert_jobs, _JobColumns.of_jobs(jobs, self.now()))

    async def _insert_rows(self, rows: list[tuple[Any, ...]]) -> list[EnqueueResult]:
        """Loop thread: the group commit of single enqueues (rows as built by enqueue)."""
        return await self._insert_jobs(_JobColumns.of_rows(rows))

    async def _insert_jobs(
        self, cols: _JobColumns, conn: asyncpg.Connection | None = None
    ) -> list[EnqueueResult]:
        """Loop thread: insert jobs in one statement; results in input order."""
        if conn is None:
            assert self._pool is not None
            async with self._pool.acquire() as acquired:
                return await self._insert_jobs_on(acquired, cols)
        return await self._insert_jobs_on(conn, cols)

    async def _insert_jobs_on(
        self, conn: asyncpg.Connection, cols: _JobColumns
    ) -> list[EnqueueResult]:
        run_ats = cols.run_at
        head = (cols.queue, cols.kind, cols.payload, cols.priority, run_ats, cols.max_attempts)
        # Jobs deduplicated away make the announcement early, never late.
        payload = self._payload(min(run_ats))
        if cols.dedupe_key.count(None) == len(run_ats):
            sql, args = cols.insert_statement()
            ids = await conn.fetch(sql, *args, payload)
            self._wake_from_loop(min(run_ats))
            return [EnqueueResult(r[0], True, run_at) for r, run_at in zip(ids, run_ats)]
        created_at = cols.created_at
        if isinstance(created_at, datetime):
            created_at = [created_at] * len(run_ats)
        records = await conn.fetch(SQL_INSERT_JOBS_DEDUPE, *head, cols.dedupe_key, created_at,
                                   payload)  # fmt: skip
        results: list[EnqueueResult] = []
        created_by_key: dict[tuple[str, str], EnqueueResult] = {}
        earliest = None
        for queue, dedupe_key, record in zip(cols.queue, cols.dedupe_key, records):
            key = (queue, dedupe_key)
            if record["created"]:
                result = EnqueueResult(record["id"], True, record["run_at"])
                if dedupe_key is not None:
                    created_by_key[key] = result
                if earliest is None or result.run_at < earliest:
                    earliest = result.run_at
            elif record["existing_id"] is not None:
                result = EnqueueResult(record["existing_id"], False, record["existing_run_at"])
            elif key in created_by_key:
                first = created_by_key[key]
                result = EnqueueResult(first.job_id, False, first.run_at)
            else:
                # A live job with this key committed after our snapshot: look it up afresh.
                found = await conn.fetchrow(SQL_FIND_LIVE_BY_KEY, *key)
                if found is None:
                    raise StoreError(
                        f"Enqueue of a job with dedupe key {dedupe_key!r} in queue {queue!r} "
                        "lost a race with a concurrent writer; retry it"
                    )
                result = EnqueueResult(found[0], False, found[1])
            results.append(result)
        self._wake_from_loop(earliest)
        return results

    # --- working jobs ---------------------------------------------------------------------

    async def claim(
        self,
        owner: str,
        limit: int,
        lease_seconds: float,
        *,
        queues: Sequence[str] | None = None,
        due_by: datetime | None = None,
    ) -> list[Job]:
        _check_owner(owner)
        lease = _check_lease(lease_seconds)
        limit = _convert(limit, ClaimLimit, "limit")
        if limit == 0:
            await trio.lowlevel.checkpoint()
            return []
        now = self.now()
        due = now if due_by is None else as_utc(due_by)
        args: list[Any] = [due, limit, owner, now + lease, now]
        sql = SQL_CLAIM
        if queues is not None:
            queue_list = [str(q) for q in queues]
            if not queue_list:
                await trio.lowlevel.checkpoint()
                return []
            sql = SQL_CLAIM_QUEUES
            args.append(queue_list)
        columns = await self._run(self._claim_in_loop, sql, args)
        return _claimed_jobs(columns, owner, now + lease)

    async def _claim_in_loop(self, sql: str, args: list[Any]) -> Any:
        return await self._fetchrow(sql, *args)

    async def heartbeat(self, owner: str, job_ids: Sequence[int], lease_seconds: float) -> list[int]:
        _check_owner(owner)
        lease = _check_lease(lease_seconds)
        ids = _check_ids(job_ids)
        if not ids:
            await trio.lowlevel.checkpoint()
            return []
        records = await self._run(self._fetch, SQL_HEARTBEAT, owner, ids, self.now() + lease)
        extended = {r[0] for r in records}
        seen: set[int] = set()
        result = []
        for job_id in ids:
            if job_id in extended and job_id not in seen:
                seen.add(job_id)
                result.append(job_id)
        return result

    async def settle(self, owner: str, outcomes: Sequence[Outcome]) -> list[SettleResult]:
        _check_owner(owner)
        rows = [_outcome_row(item) for item in outcomes]
        if not rows:
            await trio.lowlevel.checkpoint()
            return []
        statuses = await self._run(self._settle_in_loop, owner, self.now(), rows)
        return [SettleResult(row[0], status) for row, status in zip(rows, statuses)]

    async def _settle_in_loop(
        self, owner: str, now: datetime, rows: list[tuple[Any, ...]]
    ) -> list[SettleStatus]:
        assert self._pool is not None
        ids = [row[0] for row in rows]
        if len(set(ids)) == len(ids):
            statuses, wake = await self._settle_rows(self._pool, owner, now, rows)
        else:
            # The same job twice in one batch: apply in order, in one transaction, so a repeat
            # sees the first (ALREADY) as it would in two calls.
            statuses, wake = [], None
            async with self._pool.acquire() as conn, conn.transaction():
                for row in rows:
                    (status,), when = await self._settle_rows(conn, owner, now, [row])
                    statuses.append(status)
                    if when is not None and (wake is None or when < wake):
                        wake = when
        self._wake_from_loop(wake)
        return statuses

    async def _settle_rows(
        self, db: Any, owner: str, now: datetime, rows: list[tuple[Any, ...]]
    ) -> tuple[list[SettleStatus], datetime | None]:
        ids = [row[0] for row in rows]
        attempts = [row[1] for row in rows]
        if all(row[2] == "completed" for row in rows) and (
            0 < min(ids) and max(ids) < MAX_KEYED_ID and 0 < min(attempts)
            and max(attempts) < KEY_SHIFT
        ):
            keys = [job_id * KEY_SHIFT + attempt for job_id, attempt in zip(ids, attempts)]
            count, applied = await db.fetchrow(SQL_COMPLETE, owner, now, ids, keys)
            if count == len(rows):
                return [SettleStatus.OK] * len(rows), None
            done = set(applied or ())
            statuses = [SettleStatus.OK if job_id in done else SettleStatus.LEASE_LOST
                        for job_id in ids]
            for (ord_,) in await db.fetch(SQL_COMPLETED_ALREADY, owner, ids, attempts):
                if statuses[ord_ - 1] is SettleStatus.LEASE_LOST:
                    statuses[ord_ - 1] = SettleStatus.ALREADY
            return statuses, None
        columns = [ids, attempts, [row[2] for row in rows], [row[3] for row in rows],
                   [row[4] for row in rows], [row[5] for row in rows]]  # fmt: skip
        # Announce the earliest time these outcomes could make due; if some do not apply (lease
        # lost) the wake-up is merely early, which costs a listener one look.
        earliest = min(
            (now if row[2] == "released" else row[3] for row in rows if row[2] in _REQUEUES),
            default=None,
        )
        if earliest is None:
            records = await db.fetch(SQL_SETTLE, owner, now, *columns)
        else:
            records = await db.fetch(SQL_SETTLE_NOTIFY, owner, now, *columns,
                                     self._payload(earliest))  # fmt: skip
        statuses = [SettleStatus.LEASE_LOST] * len(rows)
        wake = None
        for ord_, status, when in records:
            statuses[ord_ - 1] = SettleStatus(status)
            if when is not None and (wake is None or when < wake):
                wake = when
        return statuses, wake

    async def release_expired(self) -> ExpiredLeases:
        now = self.now()
        return await self._run(self._release_expired_in_loop, now)

    async def _release_expired_in_loop(self, now: datetime) -> ExpiredLeases:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            records = await conn.fetch(SQL_RELEASE_EXPIRED, now, EXPIRED_ERROR)
            released = [r[0] for r in records if r[1] == "pending"]
            dead = [r[0] for r in records if r[1] == "dead"]
            if released:
                await conn.execute(SQL_NOTIFY, self._payload(now))
        if released:
            self._wake_from_loop(now)
        return ExpiredLeases(released=released, dead=dead)

    # --- managing jobs --------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job:
        row = await self._run(self._fetchrow, SQL_GET_JOB, _check_ids([job_id], "job_id")[0])
        if row is None:
            raise NotFound(f"Job {job_id} does not exist")
        return _job(row)

    async def cancel(self, job_id: int) -> Job:
        _check_ids([job_id], "job_id")
        return await self._run(self._cancel_in_loop, job_id, self.now())

    async def _cancel_in_loop(self, job_id: int, now: datetime) -> Job:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(SQL_GET_JOB_FOR_UPDATE, job_id)
            return await self._cancel_locked(conn, job_id, row, now)

    @staticmethod
    async def _cancel_locked(conn: Any, job_id: int, row: Any, now: datetime) -> Job:
        if row is None:
            raise NotFound(f"Job {job_id} does not exist")
        state = row["state"]
        if state == "cancelled":
            return _job(row)
        if state != "pending":
            why = (
                "it is running and cannot be unsent"
                if state == "processing"
                else "it has already finished"
            )
            raise InvalidTransition(
                f"Job {job_id} is {state}: only a pending job can be cancelled ({why})",
                job_id=job_id,
                state=state,
            )
        updated = await conn.fetchrow(
            f"UPDATE jobs SET state = 'cancelled', finished_at = $2 WHERE id = $1 "
            f"RETURNING {_JOB_COLS}",
            job_id,
            now,
        )
        return _job(updated)

    async def reschedule(self, job_id: int, run_at: datetime) -> Job:
        _check_ids([job_id], "job_id")
        return await self._run(self._reschedule_in_loop, job_id, as_utc(run_at))

    async def _reschedule_in_loop(self, job_id: int, run_at: datetime) -> Job:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(SQL_GET_JOB_FOR_UPDATE, job_id)
            if row is None:
                raise NotFound(f"Job {job_id} does not exist")
            if row["state"] != "pending":
                raise InvalidTransition(
                    f"Job {job_id} is {row['state']}: only a pending job can be rescheduled",
                    job_id=job_id,
                    state=row["state"],
                )
            updated = await conn.fetchrow(
                f"UPDATE jobs SET run_at = $2 WHERE id = $1 RETURNING {_JOB_COLS}", job_id, run_at
            )
            await conn.execute(SQL_NOTIFY, self._payload(run_at))
        self._wake_from_loop(run_at)
        return _job(updated)

    async def redrive(self, job_ids: Sequence[int]) -> list[int]:
        ids = _check_ids(job_ids)
        if not ids:
            await trio.lowlevel.checkpoint()
            return []
        return await self._run(self._redrive_in_loop, ids, self.now())

    async def _redrive_in_loop(self, ids: list[int], now: datetime) -> list[int]:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            try:
                async with conn.transaction():  # a savepoint
                    records = await conn.fetch(SQL_REDRIVE, ids, now)
            except asyncpg.UniqueViolationError:
                # A live job took a dead job's dedupe key meanwhile: go one by one, skipping it.
                records = []
                for job_id in ids:
                    with contextlib.suppress(asyncpg.UniqueViolationError):
                        async with conn.transaction():
                            records += await conn.fetch(SQL_REDRIVE, [job_id], now)
            if records:
                await conn.execute(SQL_NOTIFY, self._payload(now))
        done = {r[0] for r in records}
        if done:
            self._wake_from_loop(now)
        return [job_id for job_id in dict.fromkeys(ids) if job_id in done]

    async def purge(self, finished_before: datetime) -> int:
        status = await self._run(self._execute, SQL_PURGE, as_utc(finished_before))
        return int(status.split()[-1])

    async def tidy(self) -> None:
        # Plain VACUUM never blocks reads or writes; after a purge it makes the dead rows'
        # space reusable and refreshes statistics sooner than autovacuum would.
        for table in ("jobs", "job_attempts", "posts", "media", "media_chunks"):
            await self._run(self._execute, f"VACUUM (ANALYZE) {table}")

    # --- operating queues ---------------------------------------------------------------

    async def search_jobs(self, search: JobSearch) -> JobPage:
        search = check_search(search)
        conditions, args = ["true"], []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if search.state is not None:
            # A literal (a JobState value, not user text): a parameter would keep the planner
            # from the partial index of dead jobs once it caches a generic plan.
            conditions.append(f"state = '{search.state.value}'")
        for column, value in (("queue", search.queue), ("kind", search.kind)):
            if value is not None:
                if not isinstance(value, str):
                    raise ValidationError(f"{column} must be a string", field=column)
                conditions.append(f"{column} = {arg(value)}")
        if search.run_from is not None:
            conditions.append(f"run_at >= {arg(as_utc(search.run_from))}")
        if search.run_to is not None:
            conditions.append(f"run_at < {arg(as_utc(search.run_to))}")
        if search.cursor is not None:
            conditions.append(f"id < {arg(_decode_job_cursor(search.cursor))}")
        sql = (f"SELECT {_JOB_COLS}, failure_cause FROM jobs WHERE {' AND '.join(conditions)} "
               f"ORDER BY id DESC LIMIT {arg(search.limit + 1)}")
        rows = await self._run(self._fetch, sql, *args)
        records = [_job_record(row) for row in rows[:search.limit]]
        more = len(rows) > search.limit
        return JobPage(records, _encode_job_cursor(records[-1].job.id) if more else None)

    async def get_job_record(self, job_id: int) -> JobRecord:
        _check_ids([job_id], "job_id")
        return await self._one(f"SELECT {_JOB_COLS}, failure_cause FROM jobs WHERE id = $1",
                               [job_id], _job_record, f"Job {job_id} does not exist")

    async def pause_queue(self, queue: str) -> PausedQueue:
        queue = _check_queue(queue)
        return await self._one(
            "WITH ins AS (INSERT INTO paused_queues (queue, paused_at) VALUES ($1, $2) "
            "ON CONFLICT (queue) DO NOTHING RETURNING queue, paused_at) "
            "SELECT queue, paused_at FROM ins UNION ALL "
            "SELECT queue, paused_at FROM paused_queues WHERE queue = $1 LIMIT 1",
            [queue, self.now()], lambda row: PausedQueue(row[0], row[1]),
            f"Queue {queue!r} could not be paused")

    async def resume_queue(self, queue: str) -> bool:
        queue = _check_queue(queue)
        return await self._run(self._resume_in_loop, queue, self.now())

    async def _resume_in_loop(self, queue: str, now: datetime) -> bool:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            status = await conn.execute("DELETE FROM paused_queues WHERE queue = $1", queue)
            # Every process's ticker may be asleep past this queue's due jobs: wake them all.
            await conn.execute(SQL_NOTIFY, self._payload(now))
        self._wake_from_loop(now)
        return status != "DELETE 0"

    async def paused_queues(self) -> list[PausedQueue]:
        rows = await self._run(self._fetch,
                               "SELECT queue, paused_at FROM paused_queues ORDER BY queue")
        return [PausedQueue(row[0], row[1]) for row in rows]

    # --- reading --------------------------------------------------------------------------

    async def counts(self) -> list[QueueCount]:
        records = await self._run(
            self._fetch,
            "SELECT queue, state, count(*) FROM jobs GROUP BY queue, state ORDER BY queue, state",
        )
        return [QueueCount(r[0], _STATES[r[1]], r[2]) for r in records]

    async def queue_activity(self, since: datetime, *, sample: int = 1000) -> list[QueueActivity]:
        since = as_utc(since)
        counted, durations = await self._run(self._activity, self.now(), since, max(0, int(sample)))
        return activity_rows(counted, durations)

    async def _activity(self, now: datetime, since: datetime, sample: int) -> tuple[list, list]:
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            counted = [tuple(row) for row in await conn.fetch(_ACTIVITY, now, since)]
            durations = [tuple(row) for row in await conn.fetch(_ACTIVITY_DURATIONS, since, sample)]
        return counted, durations

    async def next_due(self, queues: Sequence[str] | None = None) -> datetime | None:
        # Written as the claim index's own order with LIMIT 1, so the plan is an index scan
        # whatever the statistics said when asyncpg prepared it: a plan cached while the table
        # was tiny (a seq scan) would otherwise read every pending row once it has grown.
        if queues is None:
            return await self._run(self._fetchval, _NEXT_DUE.format(queues=""))
        return await self._run(
            self._fetchval, _NEXT_DUE.format(queues="AND queue = ANY($1::text[])"),
            [str(q) for q in queues],
        )

    async def attempts(self, job_id: int) -> list[Attempt]:
        _check_ids([job_id], "job_id")
        return await self._run(self._attempts_in_loop, job_id)

    async def _attempts_in_loop(self, job_id: int) -> list[Attempt]:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            job = await conn.fetchrow(
                "SELECT state, attempt, owner, started_at, finished_at FROM jobs WHERE id = $1",
                job_id,
            )
            if job is None:
                raise NotFound(f"Job {job_id} does not exist")
            history = await conn.fetch(
                "SELECT attempt, owner, started_at, finished_at, outcome, error "
                "FROM job_attempts WHERE job_id = $1 ORDER BY id",
                job_id,
            )
        attempts = [
            Attempt(job_id, r[0], r[1], r[2], r[3], _OUTCOMES[r[4]], r[5]) for r in history
        ]
        state = job["state"]
        if state == "processing":
            attempts.append(
                Attempt(job_id, job["attempt"], job["owner"], job["started_at"], None,
                        AttemptOutcome.RUNNING)  # fmt: skip
            )
        elif state == "completed" and job["attempt"] > 0:
            attempts.append(
                Attempt(job_id, job["attempt"], job["owner"], job["started_at"],
                        job["finished_at"], AttemptOutcome.COMPLETED)  # fmt: skip
            )
        return attempts

    def wakeups(self) -> AsyncIterator[datetime]:
        return _Wakeups(self)

    # --- users and API tokens --------------------------------------------------------------

    async def create_user(self, user: NewUser) -> User:
        user = validated(user)
        return await self._run(self._create_user_in_loop, user, self.now())

    async def _create_user_in_loop(self, user: NewUser, now: datetime) -> User:
        try:
            row = await self._fetchrow(
                f"INSERT INTO users (name, tier, role, created_at) VALUES ($1, $2, $3, $4) "
                f"RETURNING {_USER_COLS}",
                user.name,
                user.tier.value,
                user.role.value,
                now,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(f"User name {user.name!r} is taken; choose another") from exc
        return _user(row)

    async def _one(self, sql: str, args: Sequence[Any], convert: Callable[[Any], T],
                   missing: str) -> T:  # fmt: skip
        row = await self._run(self._fetchrow, sql, *args)
        if row is None:
            raise NotFound(missing)
        return convert(row)

    async def get_user(self, user_id: int) -> User:
        _check_ids([user_id], "user_id")
        return await self._one(f"SELECT {_USER_COLS} FROM users WHERE id = $1 AND {_LIVE}",
                               [user_id], _user, f"User {user_id} does not exist")  # fmt: skip

    async def get_user_by_name(self, name: str) -> User:
        return await self._one(f"SELECT {_USER_COLS} FROM users WHERE name = $1 AND {_LIVE}",
                               [_check_str(name, "name")], _user, f"User {name!r} does not exist")  # fmt: skip

    async def list_users(self) -> list[User]:
        records = await self._run(self._fetch,
                                  f"SELECT {_USER_COLS} FROM users WHERE {_LIVE} ORDER BY id")
        return [_user(r) for r in records]

    async def set_tier(self, user_id: int, tier: Tier) -> User:
        _check_ids([user_id], "user_id")
        if not isinstance(tier, Tier):
            try:
                tier = Tier(tier)
            except ValueError as exc:
                allowed = ", ".join(t.value for t in Tier)
                raise ValidationError(f"Unknown tier {tier!r}; use one of {allowed}",
                                      field="tier") from exc  # fmt: skip
        return await self._one(
            f"UPDATE users SET tier = $2 WHERE id = $1 AND {_LIVE} RETURNING {_USER_COLS}",
            [user_id, tier.value], _user, f"User {user_id} does not exist",
        )  # fmt: skip

    async def create_token(self, user_id: int, name: str, token_hash: str) -> ApiToken:
        _check_ids([user_id], "user_id")
        _convert(name, TokenName, "name")
        _check_token_hash(token_hash)
        return await self._run(self._create_token_in_loop, user_id, name, token_hash, self.now())

    async def _create_token_in_loop(self, user_id: int, name: str, token_hash: str,
                                    now: datetime) -> ApiToken:  # fmt: skip
        try:
            row = await self._fetchrow(
                f"INSERT INTO api_tokens (user_id, name, token_hash, created_at) "
                f"SELECT $1, $2, $3, $4 WHERE EXISTS ({_LIVE_USER}) RETURNING {_TOKEN_COLS}",
                user_id, name, token_hash, now,
            )  # fmt: skip
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("A token with this hash already exists") from exc
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFound(f"User {user_id} does not exist") from exc
        if row is None:
            raise NotFound(f"User {user_id} does not exist")
        return _token(row)

    async def revoke_token(self, token_id: int) -> ApiToken:
        _check_ids([token_id], "token_id")
        return await self._one(
            f"UPDATE api_tokens SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 "
            f"RETURNING {_TOKEN_COLS}",
            [token_id, self.now()], _token, f"Token {token_id} does not exist",
        )  # fmt: skip

    async def list_tokens(self, user_id: int) -> list[ApiToken]:
        _check_ids([user_id], "user_id")
        records = await self._run(
            self._fetch,
            f"SELECT {_TOKEN_COLS} FROM api_tokens WHERE user_id = $1 ORDER BY id", user_id,
        )  # fmt: skip
        return [_token(r) for r in records]

    async def user_for_token(self, token_hash: str) -> User | None:
        if not isinstance(token_hash, str):
            raise ValidationError("token_hash must be a string", field="token_hash")
        row = await self._run(
            self._fetchrow,
            "SELECT u.id, u.name, u.tier, u.role, u.created_at FROM api_tokens t "
            "JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1 AND t.revoked_at IS NULL "
            "AND u.removed_at IS NULL",
            token_hash,
        )
        return None if row is None else _user(row)

    async def remove_user(self, user_id: int) -> UserRemoval:
        _check_ids([user_id], "user_id")
        return await self._run(self._remove_user_in_loop, user_id, self.now())

    async def _remove_user_in_loop(self, user_id: int, now: datetime) -> UserRemoval:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {_USER_COLS} FROM users WHERE id = $1 AND {_LIVE} FOR UPDATE", user_id)
            if row is None:
                raise NotFound(f"User {user_id} does not exist")
            user = _user(row)
            if user.role is Role.ADMIN:
                # Lock every admin row: two admins removing each other at once cannot both pass.
                admins = await conn.fetch(
                    f"SELECT id FROM users WHERE role = 'admin' AND {_LIVE} ORDER BY id FOR UPDATE")
                if len(admins) < 2:
                    raise Conflict(f"{user.name!r} is the last admin; make another user an admin "
                                   "before removing them")
            posts = await conn.execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = $2 WHERE state = 'pending' "
                "AND id IN (SELECT job_id FROM posts WHERE user_id = $1)", user_id, now)
            tokens = await conn.execute(
                "UPDATE api_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
                user_id, now)
            accounts = await conn.execute(
                "UPDATE accounts SET refresh_token_encrypted = '', needs_relink = true "
                "WHERE user_id = $1", user_id)
            # A '#' suffix, which no valid name has, frees the name for a new user.
            await conn.execute(
                "UPDATE users SET removed_at = $2, name = name || '#' || id WHERE id = $1",
                user_id, now)
        return UserRemoval(user, _affected(posts), _affected(tokens), _affected(accounts))

    # --- broadcasts ------------------------------------------------------------------------

    async def broadcast(self, message: bytes) -> None:
        payload = f"{self._instance} {base64.b64encode(check_broadcast(message)).decode()}"
        await self._run(self._execute, "SELECT pg_notify($1, $2)", BROADCAST_CHANNEL, payload)

    def broadcasts(self) -> AsyncIterator[bytes | None]:
        feed: EventFeed[bytes | None] = EventFeed(
            self._sidecar.trio_token, max_buffer=BROADCAST_BUFFER, merge=missed_broadcasts)
        if self._closed:
            feed.close()
        else:
            self._broadcast_feeds.add(feed)
        return feed

    def _on_broadcast(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        """Loop thread: another store's broadcast (our own are skipped)."""
        instance, _, encoded = payload.partition(" ")
        if instance == self._instance:
            return
        try:
            message = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            log.warning("Ignoring a malformed broadcast %r", payload[:100])
            return
        self._sidecar.run_in_trio(self._dispatch_broadcast, message)

    def _dispatch_broadcast(self, message: bytes | None) -> None:
        for feed in list(self._broadcast_feeds):
            feed.put_nowait(message)

    # --- Reddit accounts -------------------------------------------------------------------

    async def create_account(self, account: NewAccount) -> Account:
        account = validated(account)
        return await self._run(self._create_account_in_loop, account, self.now())

    async def _create_account_in_loop(self, account: NewAccount, now: datetime) -> Account:
        try:
            row = await self._fetchrow(
                f"""INSERT INTO accounts (user_id, reddit_username, refresh_token_encrypted,
                                          scopes, needs_relink, created_at)
                    SELECT $1, $2, $3, $4, false, $5 WHERE EXISTS ({_LIVE_USER})
                    ON CONFLICT (user_id, reddit_username) DO UPDATE
                    SET refresh_token_encrypted = EXCLUDED.refresh_token_encrypted,
                        scopes = EXCLUDED.scopes, needs_relink = false
                    RETURNING {_ACCOUNT_COLS}""",
                account.user_id, account.reddit_username, account.refresh_token_encrypted,
                account.scopes, now,
            )  # fmt: skip
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFound(f"User {account.user_id} does not exist") from exc
        if row is None:
            raise NotFound(f"User {account.user_id} does not exist")
        return _account(row)

    async def get_account(self, account_id: int) -> Account:
        _check_ids([account_id], "account_id")
        return await self._one(f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE id = $1",
                               [account_id], _account,
                               f"Account {account_id} does not exist")  # fmt: skip

    async def list_accounts(self, user_id: int) -> list[Account]:
        _check_ids([user_id], "user_id")
        records = await self._run(
            self._fetch, f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE user_id = $1 ORDER BY id",
            user_id,
        )  # fmt: skip
        return [_account(r) for r in records]

    async def set_account_token(self, account_id: int, refresh_token_encrypted: bytes) -> Account:
        _check_ids([account_id], "account_id")
        if not isinstance(refresh_token_encrypted, bytes):
            raise ValidationError("refresh_token_encrypted must be bytes",
                                  field="refresh_token_encrypted")  # fmt: skip
        return await self._one(
            f"UPDATE accounts SET refresh_token_encrypted = $2, needs_relink = false "
            f"WHERE id = $1 RETURNING {_ACCOUNT_COLS}",
            [account_id, refresh_token_encrypted], _account,
            f"Account {account_id} does not exist",
        )  # fmt: skip

    async def set_needs_relink(self, account_id: int, needs_relink: bool) -> Account:
        _check_ids([account_id], "account_id")
        return await self._one(
            f"UPDATE accounts SET needs_relink = $2 WHERE id = $1 RETURNING {_ACCOUNT_COLS}",
            [account_id, bool(needs_relink)], _account, f"Account {account_id} does not exist",
        )  # fmt: skip

    # --- account link requests --------------------------------------------------------------

    async def create_link_request(self, state_hash: str, user_id: int, secret_hash: str,
                                  expires_at: datetime) -> LinkRequest:
        state_hash = _check_hash(state_hash, "state_hash")
        _check_ids([user_id], "user_id")
        secret_hash = _check_hash(secret_hash, "secret_hash")
        if not isinstance(expires_at, datetime):
            raise ValidationError("expires_at must be a datetime", field="expires_at")
        return await self._run(self._create_link_request_in_loop, state_hash, user_id,
                               secret_hash, as_utc(expires_at), self.now())

    async def _create_link_request_in_loop(self, state_hash: str, user_id: int, secret_hash: str,
                                           expires_at: datetime, now: datetime) -> LinkRequest:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(_LIVE_USER, user_id) is None:
                raise NotFound(f"User {user_id} does not exist")
            await conn.execute("DELETE FROM link_requests WHERE expires_at < $1",
                               now - LINK_REQUEST_MEMORY)
            try:
                row = await conn.fetchrow(
                    f"INSERT INTO link_requests (state_hash, user_id, secret_hash, created_at, "
                    f"expires_at) VALUES ($1, $2, $3, $4, $5) RETURNING {_LINK_REQUEST_COLS}",
                    state_hash, user_id, secret_hash, now, expires_at)
            except asyncpg.UniqueViolationError as exc:
                raise Conflict("A link request with this state already exists") from exc
            except asyncpg.ForeignKeyViolationError as exc:
                raise NotFound(f"User {user_id} does not exist") from exc
        return _link_request(row)

    async def get_link_request(self, state_hash: str) -> LinkRequest | None:
        state_hash = _check_str(state_hash, "state_hash")
        row = await self._run(self._fetchrow, f"SELECT {_LINK_REQUEST_COLS} FROM link_requests "
                              "WHERE state_hash = $1", state_hash)
        return None if row is None else _link_request(row)

    async def hold_link_code(self, state_hash: str, held_code: bytes, verifier_hash: str) -> bool:
        if type(held_code) is not bytes:
            raise ValidationError("held_code must be bytes", field="held_code")
        status = await self._run(
            self._execute,
            "UPDATE link_requests SET held_code = $1, verifier_hash = $2 WHERE state_hash = $3 "
            "AND held_code IS NULL AND used_at IS NULL AND expires_at > $4",
            held_code, _check_hash(verifier_hash, "verifier_hash"),
            _check_str(state_hash, "state_hash"), self.now())
        return status == "UPDATE 1"

    async def use_link_request(self, state_hash: str) -> bool:
        now = self.now()
        status = await self._run(
            self._execute,
            "UPDATE link_requests SET used_at = $1 WHERE state_hash = $2 AND used_at IS NULL "
            "AND expires_at > $1", now, _check_str(state_hash, "state_hash"))
        return status == "UPDATE 1"

    # --- posts -----------------------------------------------------------------------------

    async def create_posts(self, posts: Sequence[NewPost], *, max_attempts: int = 3) -> list[Post]:
        posts = [validated(post) for post in posts]
        if type(max_attempts) is not int or not 1 <= max_attempts <= 1000:
            raise ValidationError("max_attempts must be an integer from 1 to 1000",
                                  field="max_attempts")  # fmt: skip
        if not posts:
            await trio.lowlevel.checkpoint()
            return []
        return await self._run(self._create_posts_in_loop, posts, max_attempts, self.now())

    async def _create_posts_in_loop(
        self, posts: list[NewPost], max_attempts: int, now: datetime
    ) -> list[Post]:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            owners = dict(
                await conn.fetch(
                    "SELECT id, user_id FROM accounts WHERE id = ANY($1::bigint[])",
                    list({post.account_id for post in posts}),
                )
            )
            for post in posts:
                if owners.get(post.account_id) != post.user_id:
                    raise NotFound(
                        f"Account {post.account_id} does not exist or does not belong to user "
                        f"{post.user_id}"
                    )
            post_ids = [
                r[0]
                for r in await conn.fetch(
                    "SELECT nextval('posts_id_seq'::regclass) FROM generate_series(1, $1)",
                    len(posts),
                )
            ]
            scheduled = [as_utc(post.scheduled_for) for post in posts]
            rows = [
                (POST_QUEUE, POST_JOB_KIND, msgspec.json.encode({"post_id": post_id}), 0, when,
                 max_attempts, None, now)  # fmt: skip
                for post_id, when in zip(post_ids, scheduled)
            ]
            jobs = await self._insert_jobs(_JobColumns.of_rows(rows), conn)
            contents = [_json(post.content) for post in posts]
            recurrences = [
                None if post.recurrence is None else _json(post.recurrence) for post in posts
            ]
            await conn.execute(
                """INSERT INTO posts (id, user_id, account_id, job_id, scheduled_for, created_at,
                                      updated_at, subreddit, title, content, recurrence,
                                      title_key)
                   SELECT id, user_id, account_id, job_id, scheduled_for, $6, $6, subreddit,
                          title, content::jsonb, recurrence::jsonb, title_key
                   FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                               $5::timestamptz[], $7::text[], $8::text[], $9::text[],
                               $10::text[], $11::text[])
                        AS t(id, user_id, account_id, job_id, scheduled_for, subreddit, title,
                             content, recurrence, title_key)""",
                post_ids,
                [post.user_id for post in posts],
                [post.account_id for post in posts],
                [job.job_id for job in jobs],
                scheduled,
                now,
                [post.content.subreddit for post in posts],
                [post.content.title for post in posts],
                contents,
                recurrences,
                [title_key(post.content.title) for post in posts],
            )
            for post_id, post in zip(post_ids, posts):
                await _link_media(conn, post_id, post.user_id, post.content)
        return [
            Post(
                id=post_id,
                user_id=post.user_id,
                account_id=post.account_id,
                content=post.content,
                scheduled_for=when,
                status=PostStatus.SCHEDULED,
                job_id=job.job_id,
                reddit_id=None,
                reddit_url=None,
                error=None,
                recurrence=post.recurrence,
                created_at=now,
                updated_at=now,
            )
            for post_id, post, when, job in zip(post_ids, posts, scheduled, jobs)
        ]

    async def get_post(self, post_id: int, user_id: int | None = None) -> Post:
        _check_ids([post_id], "post_id")
        if user_id is None:
            return await self._one(f"{_POST_SELECT} WHERE p.id = $1", [post_id], _post,
                                   f"Post {post_id} does not exist")  # fmt: skip
        _check_ids([user_id], "user_id")
        return await self._one(f"{_POST_SELECT} WHERE p.id = $1 AND p.user_id = $2",
                               [post_id, user_id], _post,
                               f"Post {post_id} does not exist")  # fmt: skip

    async def get_post_by_job(self, job_id: int) -> Post:
        _check_ids([job_id], "job_id")
        return await self._one(f"{_POST_SELECT} WHERE p.job_id = $1", [job_id], _post,
                               f"No post belongs to job {job_id}")  # fmt: skip

    async def list_posts(
        self,
        user_id: int,
        *,
        status: PostStatus | None = None,
        scheduled_from: datetime | None = None,
        scheduled_to: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> PostPage:
        _check_ids([user_id], "user_id")
        if type(limit) is not int or not 1 <= limit <= 500:
            raise ValidationError(f"limit must be from 1 to 500, got {limit!r}", field="limit")
        conditions = ["p.user_id = $1"]
        args: list[Any] = [user_id]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if status is not None:
            if not isinstance(status, PostStatus):
                try:
                    status = PostStatus(status)
                except ValueError as exc:
                    raise ValidationError(f"Unknown post status {status!r}",
                                          field="status") from exc  # fmt: skip
            conditions.append(STATUS_CONDITION[status])
        if scheduled_from is not None:
            conditions.append(f"p.scheduled_for >= {arg(as_utc(scheduled_from))}")
        if scheduled_to is not None:
            conditions.append(f"p.scheduled_for < {arg(as_utc(scheduled_to))}")
        if cursor is not None:
            after_time, after_id = _decode_cursor(cursor)
            conditions.append(f"(p.scheduled_for, p.id) > ({arg(after_time)}, {arg(after_id)})")
        sql = (
            f"{_POST_SELECT} WHERE {' AND '.join(conditions)} "
            f"ORDER BY p.scheduled_for, p.id LIMIT {arg(limit + 1)}"
        )
        records = await self._run(self._fetch, sql, *args)
        posts = [_post(r) for r in records[:limit]]
        next_cursor = None
        if len(records) > limit:
            last = posts[-1]
            next_cursor = _encode_cursor(last.scheduled_for, last.id)
        return PostPage(posts=posts, next_cursor=next_cursor)

    async def find_recent_posts(
        self, account_id: int, subreddit: str, title: str, since: datetime
    ) -> list[Post]:
        _check_ids([account_id], "account_id")
        records = await self._run(
            self._fetch,
            f"""{_POST_SELECT}
                WHERE p.account_id = $1 AND lower(p.subreddit) = lower($2)
                  AND p.title_key = $3
                  AND (j.state IN ('pending', 'processing')
                       OR (j.state = 'completed' AND j.finished_at >= $4))
                ORDER BY p.id""",
            account_id, _check_str(subreddit, "subreddit"), title_key(_check_str(title, "title")),
            as_utc(since),
        )  # fmt: skip
        return [_post(r) for r in records]

    async def update_post(
        self,
        post_id: int,
        user_id: int,
        *,
        content: PostContent | None = None,
        scheduled_for: datetime | None = None,
    ) -> Post:
        _check_ids([post_id], "post_id")
        _check_ids([user_id], "user_id")
        if content is not None:
            content = validated(content)
        when = None if scheduled_for is None else as_utc(scheduled_for)
        return await self._run(self._update_post_in_loop, post_id, user_id, content, when,
                               self.now())  # fmt: skip

    async def _locked_post(self, conn: Any, post_id: int, user_id: int) -> Any:
        row = await conn.fetchrow(
            f"{_POST_SELECT} WHERE p.id = $1 AND p.user_id = $2 FOR UPDATE", post_id, user_id
        )
        if row is None:
            raise NotFound(f"Post {post_id} does not exist")
        return row

    async def _update_post_in_loop(
        self, post_id: int, user_id: int, content: PostContent | None,
        scheduled_for: datetime | None, now: datetime,
    ) -> Post:  # fmt: skip
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            row = await self._locked_post(conn, post_id, user_id)
            check_changeable(_post(row), "edited" if content is not None else "rescheduled", now)
            if content is not None:
                await conn.execute(
                    "UPDATE posts SET content = $2::jsonb, subreddit = $3, title = $4, "
                    "title_key = $6, updated_at = $5 WHERE id = $1",
                    post_id, _json(content), content.subreddit, content.title, now,
                    title_key(content.title),
                )  # fmt: skip
                await _link_media(conn, post_id, row["user_id"], content)
            if scheduled_for is not None:
                await conn.execute(
                    "UPDATE posts SET scheduled_for = $2, updated_at = $3 WHERE id = $1",
                    post_id, scheduled_for, now,
                )  # fmt: skip
                await conn.execute(
                    "UPDATE jobs SET run_at = $2 WHERE id = $1", row["job_id"], scheduled_for
                )
                await conn.execute(SQL_NOTIFY, self._payload(scheduled_for))
            updated = await conn.fetchrow(f"{_POST_SELECT} WHERE p.id = $1", post_id)
        self._wake_from_loop(scheduled_for)
        return _post(updated)

    async def revive_post(
        self, post_id: int, *, scheduled_for: datetime, content: PostContent | None = None
    ) -> Post:
        _check_ids([post_id], "post_id")
        if content is not None:
            content = validated(content)
        if not isinstance(scheduled_for, datetime) or scheduled_for.utcoffset() is None:
            raise ValidationError("scheduled_for must be a datetime with a time zone",
                                  field="scheduled_for")
        return await self._run(self._revive_post_in_loop, post_id, content,
                               as_utc(scheduled_for), self.now())

    async def _revive_post_in_loop(self, post_id: int, content: PostContent | None,
                                   when: datetime, now: datetime) -> Post:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(f"{_POST_SELECT} WHERE p.id = $1 FOR UPDATE", post_id)
            if row is None:
                raise NotFound(f"Post {post_id} does not exist")
            check_revivable(_post(row), content is not None)
            if content is not None:
                await conn.execute(
                    "UPDATE posts SET content = $2::jsonb, subreddit = $3, title = $4, title_key = $5 "
                    "WHERE id = $1",
                    post_id, _json(content), content.subreddit, content.title, title_key(content.title))
                await _link_media(conn, post_id, row["user_id"], content)
            await conn.execute("UPDATE posts SET scheduled_for = $2, updated_at = $3 WHERE id = $1",
                               post_id, when, now)
            await conn.execute(
                "UPDATE jobs SET state = 'pending', run_at = $2, attempt = 0, lease_until = NULL, "
                "started_at = NULL, finished_at = NULL, last_error = NULL, failure_cause = NULL "
                "WHERE id = $1 AND state = 'dead'", row["job_id"], when)
            await conn.execute(SQL_NOTIFY, self._payload(when))
            revived = await conn.fetchrow(f"{_POST_SELECT} WHERE p.id = $1", post_id)
        self._wake_from_loop(when)
        return _post(revived)

    async def cancel_post(self, post_id: int, user_id: int) -> Post:
        _check_ids([post_id], "post_id")
        _check_ids([user_id], "user_id")
        return await self._run(self._cancel_post_in_loop, post_id, user_id, self.now())

    async def _cancel_post_in_loop(self, post_id: int, user_id: int, now: datetime) -> Post:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            row = await self._locked_post(conn, post_id, user_id)
            post = _post(row)
            if post.status is PostStatus.CANCELLED:
                return post
            check_changeable(post, "cancelled", now)
            await conn.execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = $2 WHERE id = $1",
                row["job_id"], now,
            )  # fmt: skip
            await conn.execute("UPDATE posts SET updated_at = $2 WHERE id = $1", post_id, now)
            updated = await conn.fetchrow(f"{_POST_SELECT} WHERE p.id = $1", post_id)
        return _post(updated)

    async def record_publication(self, post_id: int, reddit_id: str, reddit_url: str) -> Post:
        _check_ids([post_id], "post_id")
        _convert(reddit_id, RedditId, "reddit_id")
        if not isinstance(reddit_url, str) or not reddit_url or len(reddit_url) > 2000:
            raise ValidationError("reddit_url must be 1-2000 characters", field="reddit_url")
        return await self._run(self._record_publication_in_loop, post_id, reddit_id, reddit_url,
                               self.now())  # fmt: skip

    async def _record_publication_in_loop(
        self, post_id: int, reddit_id: str, reddit_url: str, now: datetime
    ) -> Post:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            current = await conn.fetchrow(
                "SELECT reddit_id FROM posts WHERE id = $1 FOR UPDATE", post_id
            )
            if current is None:
                raise NotFound(f"Post {post_id} does not exist")
            if current[0] is None:
                await conn.execute(
                    "UPDATE posts SET reddit_id = $2, reddit_url = $3, updated_at = $4 "
                    "WHERE id = $1",
                    post_id, reddit_id, reddit_url, now,
                )  # fmt: skip
            elif current[0] != reddit_id:
                raise InvalidTransition(
                    f"Post {post_id} is already recorded as Reddit post {current[0]!r}, "
                    f"not {reddit_id!r}"
                )
            row = await conn.fetchrow(f"{_POST_SELECT} WHERE p.id = $1", post_id)
        return _post(row)

    async def arm_post(self, post_id: int) -> Post:
        _check_ids([post_id], "post_id")
        removed = await self._run(
            self._fetchval,
            "WITH p AS (SELECT id, user_id FROM posts WHERE id = $1), "
            "u AS (SELECT removed_at FROM users WHERE id = (SELECT user_id FROM p)), "
            "a AS (UPDATE posts SET armed_at = coalesce(armed_at, $2) WHERE id = $1 "
            "      AND NOT EXISTS (SELECT 1 FROM u WHERE removed_at IS NOT NULL) RETURNING id) "
            "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM p) THEN NULL "
            "WHEN EXISTS (SELECT 1 FROM a) THEN false ELSE true END",
            post_id, self.now(),
        )  # fmt: skip
        if removed is None:
            raise NotFound(f"Post {post_id} does not exist")
        if removed:
            raise InvalidTransition(f"Post {post_id} belongs to a removed user; it is not published")
        return await self.get_post(post_id)

    async def disarm_post(self, post_id: int) -> Post:
        _check_ids([post_id], "post_id")
        await self._run(
            self._execute,
            "UPDATE posts SET armed_at = NULL, updated_at = $2 WHERE id = $1 AND reddit_id IS NULL",
            post_id, self.now(),
        )  # fmt: skip
        return await self.get_post(post_id)

    # --- recurring posts and engagement ---------------------------------------------------

    async def create_follow_up(
        self, previous_post_id: int, post: NewPost, *, max_attempts: int = 3
    ) -> tuple[Post, bool]:
        _check_ids([previous_post_id], "previous_post_id")
        if not isinstance(post, NewPost):
            raise ValidationError(f"post must be a NewPost, got {type(post).__name__}", field="post")
        post = validated(post)
        if type(max_attempts) is not int or not 1 <= max_attempts <= 1000:
            raise ValidationError("max_attempts must be an integer from 1 to 1000",
                                  field="max_attempts")  # fmt: skip
        return await self._run(self._create_follow_up_in_loop, previous_post_id, post,
                               max_attempts, self.now())  # fmt: skip

    async def _create_follow_up_in_loop(
        self, previous_post_id: int, post: NewPost, max_attempts: int, now: datetime
    ) -> tuple[Post, bool]:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            # Locking the previous post queues concurrent calls here; each statement after the
            # lock sees what the winner committed. The unique index is the last word besides.
            if await conn.fetchval("SELECT id FROM posts WHERE id = $1 FOR UPDATE",
                                   previous_post_id) is None:  # fmt: skip
                raise NotFound(f"Post {previous_post_id} does not exist")
            found = await conn.fetchrow(f"{_POST_SELECT} WHERE p.follows_post_id = $1",
                                        previous_post_id)  # fmt: skip
            if found is not None:
                return _post(found), False
            owner = await conn.fetchval("SELECT user_id FROM accounts WHERE id = $1",
                                        post.account_id)  # fmt: skip
            if owner != post.user_id:
                raise NotFound(f"Account {post.account_id} does not exist or does not belong "
                               f"to user {post.user_id}")  # fmt: skip
            post_id = await conn.fetchval("SELECT nextval('posts_id_seq'::regclass)")
            when = as_utc(post.scheduled_for)
            row = (POST_QUEUE, POST_JOB_KIND, msgspec.json.encode({"post_id": post_id}), 0, when,
                   max_attempts, None, now)  # fmt: skip
            (job,) = await self._insert_jobs(_JobColumns.of_rows([row]), conn)
            await conn.execute(
                """INSERT INTO posts (id, user_id, account_id, job_id, scheduled_for, created_at,
                                      updated_at, subreddit, title, content, recurrence,
                                      follows_post_id, series_start, title_key)
                   SELECT $1, $2, $3, $4, $5, $6, $6, $7, $8, $9::jsonb, $10::jsonb, $11,
                          coalesce(series_start, scheduled_for), $12
                   FROM posts WHERE id = $11""",
                post_id, post.user_id, post.account_id, job.job_id, when, now,
                post.content.subreddit, post.content.title, _json(post.content),
                None if post.recurrence is None else _json(post.recurrence), previous_post_id,
                title_key(post.content.title),
            )  # fmt: skip
            await _link_media(conn, post_id, post.user_id, post.content)
            created = await conn.fetchrow(f"{_POST_SELECT} WHERE p.id = $1", post_id)
        return _post(created), True

    async def series_start(self, post_id: int) -> datetime:
        _check_ids([post_id], "post_id")
        return await self._one("SELECT coalesce(series_start, scheduled_for) FROM posts "
                               "WHERE id = $1", [post_id], lambda row: row[0],
                               f"Post {post_id} does not exist")  # fmt: skip

    async def record_engagement(self, readings: Sequence[EngagementReading]) -> int:
        latest: dict[int, EngagementReading] = {}
        for reading in readings:
            if not isinstance(reading, EngagementReading):
                raise ValidationError("readings must be EngagementReading records",
                                      field="readings")  # fmt: skip
            reading = validated(reading)
            kept = latest.get(reading.post_id)
            if kept is None or kept.read_at <= reading.read_at:
                latest[reading.post_id] = reading
        if not latest:
            await trio.lowlevel.checkpoint()
            return 0
        chosen = list(latest.values())
        status = await self._run(
            self._execute,
            """UPDATE posts p SET score = r.score, comments = r.comments, engagement_at = r.at
               FROM unnest($1::bigint[], $2::integer[], $3::integer[], $4::timestamptz[])
                    AS r(id, score, comments, at)
               WHERE p.id = r.id AND p.reddit_id IS NOT NULL
                 AND (p.engagement_at IS NULL OR p.engagement_at <= r.at)""",
            [r.post_id for r in chosen], [r.score for r in chosen], [r.comments for r in chosen],
            [as_utc(r.read_at) for r in chosen],
        )  # fmt: skip
        return int(status.split()[-1])

    async def posts_to_refresh(
        self, published_since: datetime, read_before: datetime, *, limit: int = 1000
    ) -> list[Post]:
        if type(limit) is not int or not 1 <= limit <= 10_000:
            raise ValidationError(f"limit must be from 1 to 10000, got {limit!r}", field="limit")
        records = await self._run(
            self._fetch,
            f"""{_POST_SELECT}
                WHERE j.state = 'completed' AND j.finished_at >= $1 AND p.reddit_id IS NOT NULL
                  AND (p.engagement_at IS NULL OR p.engagement_at < $2)
                ORDER BY p.engagement_at NULLS FIRST, p.id LIMIT $3""",
            as_utc(published_since), as_utc(read_before), limit,
        )  # fmt: skip
        return [_post(r) for r in records]

    async def subreddit_engagement(
        self, subreddit: str, *, since: datetime | None = None
    ) -> list[PostEngagement]:
        if not isinstance(subreddit, str):
            raise ValidationError("subreddit must be a string", field="subreddit")
        records = await self._run(
            self._fetch,
            """SELECT p.id, p.account_id, p.subreddit, p.scheduled_for, j.finished_at, p.score,
                      p.comments, p.engagement_at
               FROM posts p JOIN jobs j ON j.id = p.job_id
               WHERE lower(p.subreddit) = lower($1) AND p.engagement_at IS NOT NULL
                 AND j.state = 'completed' AND j.finished_at >= $2
               ORDER BY j.finished_at, p.id""",
            subreddit, EPOCH if since is None else as_utc(since),
        )  # fmt: skip
        return [PostEngagement(post_id=r[0], account_id=r[1], subreddit=r[2], scheduled_for=r[3],
                               published_at=r[4], score=r[5], comments=r[6], read_at=r[7])
                for r in records]  # fmt: skip

    # --- community rules ----------------------------------------------------------------

    async def save_subreddit_rules(self, rules: SubredditRules) -> None:
        rules = validated(rules)
        await self._run(
            self._execute,
            "INSERT INTO subreddits (name, rules, synced_at) VALUES ($1, $2::jsonb, $3) "
            "ON CONFLICT (name) DO UPDATE SET rules = excluded.rules, synced_at = excluded.synced_at",
            rules.name.lower(), msgspec.json.encode(rules).decode(), as_utc(rules.synced_at),
        )  # fmt: skip

    async def get_subreddit_rules(self, name: str) -> SubredditRules | None:
        if not isinstance(name, str):
            raise ValidationError("name must be a string", field="name")
        text = await self._run(self._fetchval, "SELECT rules::text FROM subreddits WHERE name = $1",
                               name.lower())
        return None if text is None else msgspec.json.decode(text, type=SubredditRules)

    # --- media -----------------------------------------------------------------------------

    async def create_media(self, media: NewMedia, chunks: AsyncIterable[bytes]) -> Media:
        if not isinstance(media, NewMedia):
            raise ValidationError(f"media must be a NewMedia, got {type(media).__name__}",
                                  field="media")
        media = validated(media)
        try:
            media_id = await self._run(
                self._fetchval,
                "INSERT INTO media (user_id, kind, width, height, removed, created_at) "
                f"SELECT $1, $2, $3, $4, $5::jsonb, $6 WHERE EXISTS ({_LIVE_USER}) RETURNING id",
                media.user_id, media.kind.value, media.width, media.height, _json(media.removed),
                self.now())
        except StoreError as error:
            if isinstance(error.__cause__, asyncpg.ForeignKeyViolationError):
                raise NotFound(f"User {media.user_id} does not exist") from None
            raise
        if media_id is None:
            raise NotFound(f"User {media.user_id} does not exist")
        try:
            size, digest = await self._store_chunks(media_id, chunks)
            if size == 0:
                raise ValidationError("The image is empty: send its bytes", field="chunks")
            return await self._one(
                f"UPDATE media SET ready = true, bytes = $2, sha256 = $3 WHERE id = $1 "
                f"RETURNING {_MEDIA_COLS}", [media_id, size, digest], _media,
                f"Media {media_id} was deleted while it was being stored")
        except BaseException:
            # An unfinished upload must not stay behind (if this fails too, purge_media will).
            with trio.CancelScope(shield=True), contextlib.suppress(StoreError):
                await self._run(self._execute, "DELETE FROM media WHERE id = $1", media_id)
            raise

    async def _store_chunks(self, media_id: int, chunks: AsyncIterable[bytes]) -> tuple[int, str]:
        """Write the chunks one statement each; their total size and SHA-256."""
        hasher, size, seq = hashlib.sha256(), 0, 0
        async with contextlib.aclosing(media_chunks(chunks)) as pieces:
            async for piece in pieces:
                hasher.update(piece)
                size += len(piece)
                await self._run(self._execute,
                                "INSERT INTO media_chunks (media_id, seq, data) VALUES ($1, $2, $3)",
                                media_id, seq, piece)
                seq += 1
        return size, hasher.hexdigest()

    async def get_media(self, media_id: int, user_id: int | None = None) -> Media:
        _check_ids([media_id], "media_id")
        sql = f"SELECT {_MEDIA_COLS} FROM media WHERE id = $1 AND ready"
        args: list[Any] = [media_id]
        if user_id is not None:
            _check_ids([user_id], "user_id")
            sql += " AND user_id = $2"
            args.append(user_id)
        return await self._one(sql, args, _media, f"No media with id {media_id}")

    async def list_media(self, user_id: int, *, cursor: str | None = None,
                         limit: int = 50) -> MediaPage:
        _check_ids([user_id], "user_id")
        if type(limit) is not int or not 1 <= limit <= 500:
            raise ValidationError(f"limit must be from 1 to 500, got {limit!r}", field="limit")
        before = (1 << 62) if cursor is None else decode_media_cursor(cursor)
        records = await self._run(
            self._fetch,
            f"SELECT {_MEDIA_COLS} FROM media WHERE user_id = $1 AND ready AND id < $2 "
            "ORDER BY id DESC LIMIT $3", user_id, before, limit + 1)
        media = [_media(r) for r in records[:limit]]
        return MediaPage(media, encode_media_cursor(media[-1].id) if len(records) > limit else None)

    async def read_media(self, media_id: int, user_id: int | None = None) -> AsyncIterator[bytes]:
        media = await self.get_media(media_id, user_id)
        sent, seq = 0, 0
        while sent < media.bytes:
            data = await self._run(
                self._fetchval, "SELECT data FROM media_chunks WHERE media_id = $1 AND seq = $2",
                media.id, seq)
            if data is None:
                raise NotFound(f"No media with id {media_id}")  # deleted while being read
            sent += len(data)
            seq += 1
            yield data

    async def delete_media(self, media_id: int, user_id: int) -> Media:
        _check_ids([media_id, user_id], "media_id")
        return await self._run(self._delete_media_in_loop, media_id, user_id)

    async def _delete_media_in_loop(self, media_id: int, user_id: int) -> Media:
        assert self._pool is not None
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT {_MEDIA_COLS} FROM media WHERE id = $1 AND user_id = $2 AND ready "
                "FOR UPDATE", media_id, user_id)
            if row is None:
                raise NotFound(f"No media with id {media_id}")
            posts = [r[0] for r in await conn.fetch(_SQL_MEDIA_LIVE_POSTS, media_id)]
            if posts:
                raise media_in_use(media_id, posts)
            await conn.execute("DELETE FROM media WHERE id = $1", media_id)
        return _media(row)

    async def purge_media(self, unused_before: datetime, *,
                          unfinished_before: datetime | None = None) -> int:
        unused = as_utc(unused_before)
        unfinished = unused if unfinished_before is None else as_utc(unfinished_before)
        purged = 0
        while True:
            status = await self._run(self._execute, _SQL_PURGE_MEDIA, unused, unfinished,
                                     MEDIA_PURGE_BATCH)
            batch = int(status.split()[-1])
            purged += batch
            if batch < MEDIA_PURGE_BATCH:
                return purged

    async def list_subreddit_rules(self) -> list[SubredditRules]:
        rows = await self._run(self._fetch, "SELECT rules::text FROM subreddits ORDER BY name")
        return [msgspec.json.decode(row[0], type=SubredditRules) for row in rows]


# --- cursors ---------------------------------------------------------------------------------------

_CAUSES = {cause.value: cause for cause in FailureCause}


def _job_record(row: Any) -> JobRecord:
    return JobRecord(_job(row), _CAUSES.get(row[15]))


def _check_queue(queue: str) -> str:
    try:
        return msgspec.convert(queue, Name)
    except msgspec.ValidationError as exc:
        raise ValidationError(f"queue: {exc}", field="queue") from exc


def _encode_job_cursor(job_id: int) -> str:
    return base64.urlsafe_b64encode(f"job:{job_id}".encode()).decode()


def _decode_job_cursor(cursor: str) -> int:
    try:
        kind, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
        if kind != "job":
            raise ValueError(kind)
        return int(job_id)
    except (ValueError, TypeError, AttributeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationError(
            "Malformed cursor: pass the next_cursor of the previous page unchanged",
            field="cursor",
        ) from exc


def _encode_cursor(scheduled_for: datetime, post_id: int) -> str:
    micros = (scheduled_for - EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"{micros}:{post_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        micros, post_id = base64.urlsafe_b64decode(padded.encode()).decode().split(":")
        position = EPOCH + timedelta(microseconds=int(micros)), int(post_id)
        if not -(2**63) <= position[1] < 2**63:  # a forged id no bigint holds
            raise OverflowError(f"post id {position[1]} is out of range")
        return position
    except (ValueError, TypeError, AttributeError, binascii.Error, UnicodeDecodeError,
            OverflowError) as exc:  # fmt: skip
        raise ValidationError(
            "Malformed cursor: pass the next_cursor of the previous page unchanged",
            field="cursor",
        ) from exc


# --- module helpers ------------------------------------------------------------------------------


async def migrate(conn: asyncpg.Connection) -> int:
    """Create or upgrade the schema to :data:`SCHEMA_VERSION`; return the version found before.

    Runs in one transaction under a transaction-level advisory lock, so processes starting at
    once apply each migration exactly once. Raises SchemaError for a newer schema.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS thotto_schema ("
            " id integer PRIMARY KEY CHECK (id = 1),"
            " version integer NOT NULL,"
            " migrated_at timestamptz NOT NULL DEFAULT now())"
        )
        found = await conn.fetchval("SELECT version FROM thotto_schema WHERE id = 1") or 0
        if found > SCHEMA_VERSION:
            raise SchemaError(
                f"The database schema is version {found}, newer than this Thotto understands "
                f"(version {SCHEMA_VERSION}); upgrade Thotto or use another database"
            )
        for version in sorted(number for number in MIGRATIONS if number > found):
            script = (SQL_DIR / MIGRATIONS[version]).read_text()
            try:
                await conn.execute(script)
                backfill = BACKFILLS.get(version)
                if backfill is not None:
                    await backfill(conn)
            except asyncpg.PostgresError as exc:
                raise SchemaError(f"Migration to schema version {version} failed: {exc}") from exc
        if found < SCHEMA_VERSION:
            await conn.execute(
                "INSERT INTO thotto_schema (id, version) VALUES (1, $1) "
                "ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version, migrated_at = now()",
                SCHEMA_VERSION,
            )
    return found


async def _backfill_title_keys(conn: asyncpg.Connection) -> None:
    """Migration 5: compute every post's title key (in batches, by id), then require it."""
    last_id = 0
    while True:
        rows = await conn.fetch(
            "SELECT id, title FROM posts WHERE id > $1 ORDER BY id LIMIT $2", last_id, BACKFILL_BATCH
        )
        if not rows:
            break
        await conn.execute(
            "UPDATE posts SET title_key = t.key FROM unnest($1::bigint[], $2::text[]) AS t(id, key) "
            "WHERE posts.id = t.id",
            [row["id"] for row in rows], [title_key(row["title"]) for row in rows],
        )  # fmt: skip
        last_id = rows[-1]["id"]
    await conn.execute("ALTER TABLE posts ALTER COLUMN title_key SET NOT NULL")


#: Steps in Python that follow a migration's script (what SQL alone cannot compute).
BACKFILLS = {5: _backfill_title_keys}


async def _wait_closed(conn: asyncpg.Connection, ping_every: float = 10.0) -> None:
    """Loop thread: return when ``conn`` closes; ping it now and then to notice a dead peer."""
    closed = asyncio.get_running_loop().create_future()

    def on_close(_conn: Any) -> None:
        if not closed.done():
            closed.set_result(None)

    conn.add_termination_listener(on_close)
    try:
        while not closed.done() and not conn.is_closed():
            try:
                await asyncio.wait_for(asyncio.shield(closed), ping_every)
            except asyncio.TimeoutError:
                await conn.execute("SELECT 1", timeout=5)
    finally:
        conn.remove_termination_listener(on_close)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to undo. The store keeps no session state (no SET, cursors,
    session advisory locks or LISTEN on pooled connections; an open transaction is rolled back by
    asyncpg itself), so asyncpg's default reset query would only cost a round trip per call."""


async def _close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), 5)
    except BaseException:
        pool.terminate()
        raise


@contextlib.asynccontextmanager
async def open_postgres_store(
    dsn: str,
    *,
    clock: Clock = utcnow,
    sidecar: Sidecar | None = None,
    pool_size: int = 10,
) -> AsyncIterator[PostgresStore]:
    """Open the Postgres store at ``dsn`` (``postgresql://user@host:port/dbname``).

    Creates or migrates the schema, opens an asyncpg pool of up to ``pool_size`` connections and
    a LISTEN connection, on ``sidecar`` if given (shared, e.g. with the Redis client) or on a
    sidecar of its own. On exit (also by cancellation) everything it opened is closed.
    StoreUnavailable if the server cannot be reached; SchemaError if its schema is too new.
    """
    async with contextlib.AsyncExitStack() as stack:
        if sidecar is None:
            sidecar = await stack.enter_async_context(open_sidecar("thotto-postgres"))
        store = PostgresStore(dsn, sidecar=sidecar, clock=clock, pool_size=pool_size)
        try:
            await store._open()
            yield store
        finally:
            await store.aclose()


__all__ = ["PostgresStore", "open_postgres_store", "migrate", "SCHEMA_VERSION", "describe_dsn"]
