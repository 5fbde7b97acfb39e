"""What only the SQLite adapter promises: one process per file, the writer's group commit, WAL,
schema versions and migrations, and the bulk paths' bookkeeping. Real files in ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import threading
import textwrap
from datetime import timedelta

import pytest
import sqlite_utils
import trio
import trio.testing

from thotto.engine.errors import ConfigError, Conflict, SchemaError, StoreError, StoreLocked
from thotto.engine.jobs import Completed, JobState, NewJob, SettleResult, SettleStatus
from thotto.scheduler.records import NewUser
from thotto.store import open_store
from thotto.engine.store.base import JobSearch
from thotto.store.sqlite import SCHEMA_VERSION, SqliteStore, open_sqlite_store

from .conftest import FakeClock

OK, ALREADY, LEASE_LOST = SettleStatus.OK, SettleStatus.ALREADY, SettleStatus.LEASE_LOST


@pytest.fixture
def path(tmp_path) -> str:
    return str(tmp_path / "thotto.db")


def raw(path: str) -> sqlite3.Connection:
    """A plain connection, to look at the file behind the store's back."""
    return sqlite3.connect(path, isolation_level=None)


# --- the writer: group commit and cancellation ------------------------------------------------


class WriterGate:
    """Holds the writer thread inside one request, so the requests sent meanwhile queue up and
    reach it together, as one group. ``await gate.hold(store)`` returns once the writer waits."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        self.groups: list[int] = []

    def _request(self, conn: sqlite3.Connection) -> None:
        self.entered.set()
        self.released.wait(10)

    async def hold(self, store: SqliteStore, nursery: trio.Nursery) -> None:
        nursery.start_soon(store._writer.call, self._request)
        await trio.to_thread.run_sync(self.entered.wait, 10)
        commit = store._writer._commit

        def counting_commit(group):
            self.groups.append(len(group))
            return commit(group)

        store._writer._commit = counting_commit  # records the size of every later group

    def release(self) -> None:
        self.released.set()


def insert_user(name: str):
    def request(conn: sqlite3.Connection) -> int:
        return conn.execute(
            "INSERT INTO users (name, tier, role, created_at) VALUES (?, 'free', 'user', 0)",
            (name,),
        ).lastrowid

    return request


def half_done_then_fail(conn: sqlite3.Connection) -> None:
    insert_user("half")(conn)
    raise RuntimeError("boom after one write")


async def test_one_failing_request_does_not_fail_its_group(path):
    gate, results = WriterGate(), {}

    async def call(name, request):
        try:
            results[name] = await store._writer.call(request)
        except Exception as exc:  # noqa: BLE001 - the test looks at what each caller got
            results[name] = exc

    async with open_sqlite_store(path) as store:
        async with trio.open_nursery() as nursery:
            await gate.hold(store, nursery)
            nursery.start_soon(call, "before", insert_user("before"))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(call, "bad", half_done_then_fail)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(call, "after", insert_user("after"))
            await trio.testing.wait_all_tasks_blocked()
            gate.release()
        assert gate.groups[0] == 3  # the three requests were one group
        assert isinstance(results["bad"], RuntimeError)
        assert isinstance(results["before"], int) and isinstance(results["after"], int)
        names = [user.name for user in await store.list_users()]
    assert names == ["before", "after"]  # the failing request's own write was rolled back


async def test_a_conflict_in_a_group_fails_only_its_caller(path):
    gate, outcomes = WriterGate(), {}

    async def create(n, name):
        try:
            outcomes[n] = (await store.create_user(NewUser(name=name))).name
        except Conflict:
            outcomes[n] = "conflict"

    async with open_sqlite_store(path) as store:
        async with trio.open_nursery() as nursery:
            await gate.hold(store, nursery)
            for n, name in enumerate(["alice", "alice", "bob"]):
                nursery.start_soon(create, n, name)
                await trio.testing.wait_all_tasks_blocked()  # queued in this order
            gate.release()
        assert gate.groups[0] == 3
        assert outcomes == {0: "alice", 1: "conflict", 2: "bob"}
        assert [u.name for u in await store.list_users()] == ["alice", "bob"]


async def test_concurrent_enqueues_share_one_insert_and_get_their_own_ids(path):
    gate, results = WriterGate(), {}

    async def enqueue(n):
        results[n] = await store.enqueue(NewJob(kind=f"k{n}", queue="q" if n % 2 else "p"))

    async with open_sqlite_store(path) as store:
        async with trio.open_nursery() as nursery:
            await gate.hold(store, nursery)
            for n in range(20):
                nursery.start_soon(enqueue, n)
                await trio.testing.wait_all_tasks_blocked()
            gate.release()
        assert gate.groups[0] == 20
        assert len({r.job_id for r in results.values()}) == 20
        for n, result in results.items():
            assert (await store.get_job(result.job_id)).kind == f"k{n}"


async def test_coalesced_enqueues_keep_their_own_times(path):
    clock, gate, results = FakeClock(), WriterGate(), []

    async def enqueue():
        results.append((clock(), await store.enqueue(NewJob(kind="k"))))

    async with open_sqlite_store(path, clock=clock) as store:
        async with trio.open_nursery() as nursery:
            await gate.hold(store, nursery)
            for _ in range(3):
                nursery.start_soon(enqueue)
                await trio.testing.wait_all_tasks_blocked()
                clock.advance(1)
            gate.release()
        assert gate.groups[0] == 3
        for called_at, result in results:
            job = await store.get_job(result.job_id)
            assert (job.created_at, job.run_at, result.run_at) == (called_at,) * 3


async def test_a_cancelled_caller_does_not_break_the_writer(path):
    """The write was queued when its caller was cancelled: it still commits (writes are
    idempotent), the reply is dropped, and the writer carries on."""
    gate, scopes = WriterGate(), []

    async def cancelled_enqueue():
        with trio.CancelScope() as scope:
            scopes.append(scope)
            await store.enqueue(NewJob(kind="k", dedupe_key="once"))
        assert scope.cancelled_caught

    async with open_sqlite_store(path) as store:
        async with trio.open_nursery() as nursery:
            await gate.hold(store, nursery)
            nursery.start_soon(cancelled_enqueue)
            await trio.testing.wait_all_tasks_blocked()
            scopes[0].cancel()
            await trio.testing.wait_all_tasks_blocked()
            gate.release()
        again = await store.enqueue(NewJob(kind="k", dedupe_key="once"))
        assert not again.created  # the cancelled caller's job was stored
        assert (await store.get_job(again.job_id)).state is JobState.PENDING


REFUSE_BOOM = (
    "CREATE TRIGGER refuse_boom BEFORE INSERT ON jobs WHEN NEW.kind = 'boom' "
    "BEGIN SELECT RAISE(ABORT, 'boom refused'); END"
)


async def test_a_lone_enqueue_that_fails_is_rolled_back_and_the_writer_carries_on(path):
    """A lone enqueue (nothing else ready to run) may commit on the Trio thread instead of the
    writer's: its failure is still its caller's StoreError, and both ways of writing go on."""
    async with open_sqlite_store(path) as store:
        await store._writer.call(lambda conn: conn.execute(REFUSE_BOOM))
        with pytest.raises(StoreError, match="boom refused"):
            await store.enqueue(NewJob(kind="boom"))
        alone = await store.enqueue(NewJob(kind="alone"))
        async with trio.open_nursery() as nursery:  # concurrent callers: the writer's groups
            for n in range(5):
                nursery.start_soon(store.enqueue, NewJob(kind=f"together{n}"))
        kinds = {record.job.kind for record in (await store.search_jobs(JobSearch())).jobs}
        assert kinds == {"alone", *(f"together{n}" for n in range(5))}
        assert (await store.get_job(alone.job_id)).state is JobState.PENDING


async def test_a_lone_enqueue_wakes_the_iterators_before_it_returns(path):
    async with open_sqlite_store(path) as store:
        async with contextlib.aclosing(store.wakeups()) as wakeups:
            result = await store.enqueue(NewJob(kind="k"))
            with trio.fail_after(5):
                assert await wakeups.__anext__() == result.run_at


async def test_a_caller_cancelled_before_sending_writes_nothing(path):
    async with open_sqlite_store(path) as store:
        with trio.CancelScope() as scope:
            scope.cancel()
            await store.enqueue(NewJob(kind="k"))
        assert await store.counts() == []


# --- one process per file ---------------------------------------------------------------------

OPEN_IN_CHILD = textwrap.dedent(
    """
    import sys, trio
    from thotto.store.sqlite import open_sqlite_store

    async def main():
        try:
            async with open_sqlite_store(sys.argv[1]):
                print("opened")
        except Exception as exc:
            print(type(exc).__name__, exc)

    trio.run(main)
    """
)


async def open_in_another_process(path: str) -> str:
    done = await trio.run_process(
        [sys.executable, "-c", OPEN_IN_CHILD, path], capture_stdout=True, capture_stderr=True
    )
    return done.stdout.decode().strip()


async def test_another_process_is_refused_while_the_store_is_open(path):
    async with open_sqlite_store(path):
        answer = await open_in_another_process(path)
    assert answer.startswith("StoreLocked")
    assert "one process per SQLite file" in answer
    assert await open_in_another_process(path) == "opened"  # closing released the lock


async def test_reopening_in_this_process_works_once_closed(path):
    async with open_sqlite_store(path):
        with pytest.raises(StoreLocked):
            async with open_sqlite_store(path):
                pass
    async with open_sqlite_store(path) as store:
        assert await store.counts() == []


async def test_a_symlink_to_an_open_file_is_the_same_file(path, tmp_path):
    link = tmp_path / "link.db"
    async with open_sqlite_store(path):
        link.symlink_to(path)
        with pytest.raises(StoreLocked):
            async with open_sqlite_store(str(link)):
                pass


# --- file, WAL and schema ---------------------------------------------------------------------


async def test_wal_mode_is_on(path):
    async with open_sqlite_store(path):
        assert raw(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_an_empty_file_is_migrated_to_the_current_schema(path, tmp_path):
    open(path, "wb").close()
    async with open_sqlite_store(path) as store:
        await store.enqueue(NewJob(kind="k"))
    db = sqlite_utils.Database(raw(path))
    assert {"jobs", "job_attempts", "users", "api_tokens", "accounts", "posts"} <= set(db.table_names())
    assert {"jobs_due", "jobs_dedupe", "jobs_lease", "jobs_finished"} <= {
        index.name for index in db["jobs"].indexes
    }
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_missing_directory_is_created(tmp_path):
    async with open_sqlite_store(str(tmp_path / "new" / "dir" / "thotto.db")) as store:
        assert await store.counts() == []


async def test_the_schema_version_survives_reopening(path):
    async with open_sqlite_store(path) as store:
        job = await store.enqueue(NewJob(kind="k"))
    async with open_sqlite_store(path) as store:
        assert (await store.get_job(job.job_id)).kind == "k"
    assert raw(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


async def test_a_newer_schema_is_refused_and_the_file_left_alone(path):
    async with open_sqlite_store(path):
        pass
    raw(path).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaError, match="newer than this Thotto"):
        async with open_sqlite_store(path):
            pass
    assert raw(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    raw(path).execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    async with open_sqlite_store(path) as store:  # the failed open released the lock
        assert await store.counts() == []


async def test_a_failed_migration_changes_nothing(path):
    conn = raw(path)
    conn.execute("CREATE TABLE jobs (unrelated TEXT)")  # a clash the first migration meets
    with pytest.raises(SchemaError, match="nothing was changed"):
        async with open_sqlite_store(path):
            pass
    assert sqlite_utils.Database(raw(path)).table_names() == ["jobs"]
    assert raw(path).execute("PRAGMA user_version").fetchone()[0] == 0


async def test_a_file_that_is_not_a_database_is_a_store_error(path):
    with open(path, "wb") as out:
        out.write(b"this is not a database, just some text long enough " * 20)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        async with open_sqlite_store(path):
            pass


@pytest.mark.parametrize("url", [":memory:", "sqlite:///:memory:", ""])
async def test_an_in_memory_database_is_a_config_error(url):
    with pytest.raises(ConfigError):
        async with open_store(url):
            pass


# --- closing ----------------------------------------------------------------------------------


async def test_aclose_completes_when_cancelled_and_releases_everything(path):
    store = await SqliteStore.open(path)
    await store.enqueue(NewJob(kind="k"))
    threads = {t.name for t in threading.enumerate()}
    assert {"thotto-sqlite-writer", "thotto-sqlite-reader"} <= threads
    with trio.CancelScope() as scope:
        scope.cancel()
        await store.aclose()
    await store.aclose()  # idempotent
    assert not {"thotto-sqlite-writer", "thotto-sqlite-reader", "thotto-sqlite-checkpointer"} & {
        t.name for t in threading.enumerate()
    }
    with pytest.raises(StoreError, match="closed"):
        await store.enqueue(NewJob(kind="k"))
    with pytest.raises(StoreError, match="closed"):
        await store.counts()
    async with open_sqlite_store(path) as again:  # lock released; the write was kept
        assert sum(c.count for c in await again.counts()) == 1


async def test_closing_ends_open_wakeup_iterators(path):
    async with open_sqlite_store(path) as store:
        wakes = store.wakeups()

        async def listen():
            assert [when async for when in wakes] == []

        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen)
            await trio.testing.wait_all_tasks_blocked()
            await store.aclose()


# --- wake-ups ---------------------------------------------------------------------------------


async def test_wakeups_coalesce_to_the_earliest_and_reach_every_iterator(path):
    clock = FakeClock()
    async with open_sqlite_store(path, clock=clock) as store:
        first, second = store.wakeups(), store.wakeups()
        later, sooner = clock() + timedelta(seconds=60), clock() + timedelta(seconds=10)
        await store.enqueue(NewJob(kind="k", run_at=later))
        await store.enqueue(NewJob(kind="k", run_at=sooner))
        await store.enqueue(NewJob(kind="k", run_at=later))
        with trio.fail_after(5):
            assert await anext(first) == sooner
            assert await anext(second) == sooner
        await first.aclose()
        await store.redrive([])  # nothing redriven: no wake-up
        await store.enqueue(NewJob(kind="k", run_at=later))
        with trio.fail_after(5):
            assert await anext(second) == later
        await second.aclose()


# --- bulk paths -------------------------------------------------------------------------------


async def test_bulk_enqueue_of_mixed_jobs_keeps_order_and_fields(path):
    jobs = [
        NewJob(kind="a", payload=b'{"n": 1}'),
        NewJob(kind="b", payload=b"\xff\xfe not utf-8"),  # cannot travel as JSON text
        NewJob(kind="b", queue="other", priority=5, payload=b"nul \x00 inside"),
        NewJob(kind="c", payload="ünïcode".encode()),
    ] * 100
    async with open_sqlite_store(path) as store:
        results = await store.enqueue_many(jobs)
        stored = [await store.get_job(r.job_id) for r in results]
    assert [(j.kind, j.queue, j.priority, j.payload) for j in stored] == [
        (j.kind, j.queue, j.priority, j.payload) for j in jobs
    ]
    assert len({r.job_id for r in results}) == len(jobs)


async def test_purged_job_ids_are_never_reused(path):
    clock = FakeClock()
    async with open_sqlite_store(path, clock=clock) as store:
        first = (await store.enqueue(NewJob(kind="k"))).job_id
        await store.cancel(first)
        clock.advance(10)
        assert await store.purge(clock()) == 1
        assert (await store.enqueue(NewJob(kind="k"))).job_id > first


async def test_settle_applies_a_batch_in_order_with_repeats(path):
    async with open_sqlite_store(path) as store:
        await store.enqueue_many([NewJob(kind="k") for _ in range(3)])
        a, b, c = await store.claim("w1", 3, 30)
        results = await store.settle(
            "w1",
            [
                Completed(a.id, 1),
                Completed(a.id, 1),  # the same completion again, in the same batch
                Completed(b.id, 2),  # a stale attempt
                Completed(c.id, 1),
                Completed(10**9, 1),
            ],
        )
        assert results == [
            SettleResult(a.id, OK),
            SettleResult(a.id, ALREADY),
            SettleResult(b.id, LEASE_LOST),
            SettleResult(c.id, OK),
            SettleResult(10**9, LEASE_LOST),
        ]
        assert [(await store.get_job(j.id)).state for j in (a, b, c)] == [
            JobState.COMPLETED,
            JobState.PROCESSING,
            JobState.COMPLETED,
        ]


async def test_redrive_leaves_a_dead_job_dead_while_its_dedupe_key_is_live_again(path):
    async with open_sqlite_store(path) as store:
        dead = (await store.enqueue(NewJob(kind="k", dedupe_key="key", max_attempts=1))).job_id
        (job,) = await store.claim("w1", 1, 30)
        await store.fail("w1", job.id, job.attempt, "boom")
        live = (await store.enqueue(NewJob(kind="k", dedupe_key="key"))).job_id
        other = (await store.enqueue(NewJob(kind="k", queue="other", max_attempts=1))).job_id
        await store.claim("w1", 1, 30, queues=["other"])
        await store.fail("w1", other, 1, "boom")
        assert await store.redrive([dead, other]) == [other]
        assert (await store.get_job(dead)).state is JobState.DEAD
        assert (await store.get_job(live)).state is JobState.PENDING
