"""What only the Postgres store does: several processes, LISTEN/NOTIFY, migrations, outages.

The shared behaviour of every adapter is in test_contract.py; these tests need a Postgres server
(the session's private cluster from tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta

import asyncpg
import pytest
import trio

from tests.support.postgres import free_port
from thotto.engine.aio import open_sidecar
from thotto.engine.errors import SchemaError, StoreUnavailable
from thotto.engine.jobs import UTC, Completed, NewJob
from thotto.store import open_store
from thotto.engine.store.postgres import WAKEUP_CHANNEL
from thotto.store.postgres import SCHEMA_VERSION, open_postgres_store

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def sql(dsn: str, query: str, *args):
    """Run one query on a fresh connection (from the sidecar-free test side) and return rows."""

    async def go():
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    async with open_sidecar("test-sql") as sidecar:
        return await sidecar.run(go)


async def wait_for_listeners(dsn: str, count: int, seconds: float = 10) -> None:
    """Wait until ``count`` stores' LISTEN connections are connected to the database."""
    with trio.fail_after(seconds):
        while True:
            rows = await sql(
                dsn,
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'thotto-listener' AND datname = current_database()",
            )
            if rows[0][0] >= count:
                return
            await trio.sleep(0.05)


CLAIMER = textwrap.dedent(
    """
    import json, sys, trio
    from pathlib import Path
    from thotto.engine.jobs import Completed
    from thotto.store.postgres import open_postgres_store

    async def main(dsn, owner, go_file):
        claimed = []
        async with open_postgres_store(dsn) as store:
            print("ready", flush=True)
            while not Path(go_file).exists():
                await trio.sleep(0.005)
            empty = 0
            while empty < 3:
                jobs = await store.claim(owner, 25, 60.0)
                if not jobs:
                    empty += 1
                    await trio.sleep(0.01)
                    continue
                empty = 0
                claimed += [job.id for job in jobs]
                await store.settle(owner, [Completed(job.id, job.attempt) for job in jobs])
        print(json.dumps(claimed), flush=True)

    trio.run(main, *sys.argv[1:])
    """
)


async def test_two_processes_racing_never_claim_the_same_job(postgres_dsn, tmp_path):
    async with open_postgres_store(postgres_dsn) as store:
        results = await store.enqueue_many([NewJob(kind="race") for _ in range(2000)])
    all_ids = {result.job_id for result in results}
    go_file = tmp_path / "go"

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, postgres_dsn, f"proc-{n}", str(go_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    try:
        for proc in procs:  # both stores are open: start them at once
            line = await trio.to_thread.run_sync(proc.stdout.readline)
            assert line.strip() == "ready", proc.stderr.read()
        go_file.touch()
        outputs = [await trio.to_thread.run_sync(proc.communicate, None, 60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    claimed = []
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        claimed.append(json.loads(out.strip().splitlines()[-1]))
    first, second = claimed
    assert first and second, "both processes should have won some jobs"
    assert len(first) == len(set(first)) and len(second) == len(set(second))
    assert not set(first) & set(second), "a job was claimed by both processes"
    assert set(first) | set(second) == all_ids

    async with open_postgres_store(postgres_dsn) as store:
        counts = {(c.queue, c.state.value): c.count for c in await store.counts()}
    assert counts == {("default", "completed"): 2000}


@contextlib.asynccontextmanager
async def two_stores(dsn: str):
    """A writer store, and the wake-ups of a second (listening) store on the same database."""
    async with (
        open_postgres_store(dsn) as listener,
        open_postgres_store(dsn) as writer,
        contextlib.aclosing(listener.wakeups()) as wakes,
    ):
        yield writer, wakes


async def next_wake(wakes, seconds: float = 5.0) -> datetime:
    with trio.fail_after(seconds):
        return await wakes.__anext__()


async def test_a_write_in_another_store_wakes_this_one(postgres_dsn):
    async with two_stores(postgres_dsn) as (writer, wakes):
        await writer.enqueue(NewJob(kind="k", run_at=T0))
        assert await next_wake(wakes) == T0

        # Settles that make a job due again are announced too.
        (job,) = await writer.claim("w", 1, 60.0, due_by=T0)
        retry_at = T0 + timedelta(minutes=5)
        await writer.fail("w", job.id, job.attempt, "boom", retry_at=retry_at)
        assert await next_wake(wakes) == retry_at


async def test_own_writes_wake_once_not_twice(postgres_dsn):
    """A store wakes its own iterators directly and skips the echo of its own NOTIFY."""
    async with (
        open_postgres_store(postgres_dsn) as store,
        contextlib.aclosing(store.wakeups()) as wakes,
    ):
        await store.enqueue(NewJob(kind="k", run_at=T0))
        assert await next_wake(wakes) == T0
        with trio.move_on_after(0.3):
            extra = await wakes.__anext__()
            pytest.fail(f"woke twice: {extra}")


async def test_wakeups_coalesce_to_the_earliest(postgres_dsn):
    async with (
        open_postgres_store(postgres_dsn) as store,
        contextlib.aclosing(store.wakeups()) as wakes,
    ):
        for minutes in (30, 10, 20):
            await store.enqueue(NewJob(kind="k", run_at=T0 + timedelta(minutes=minutes)))
        assert await next_wake(wakes) == T0 + timedelta(minutes=10)


async def test_listener_reconnects_after_its_connection_is_killed(postgres_dsn):
    async with two_stores(postgres_dsn) as (writer, wakes):
        await writer.enqueue(NewJob(kind="k", run_at=T0 + timedelta(hours=1)))
        await next_wake(wakes)
        killed = await sql(
            postgres_dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'thotto-listener'",
        )
        assert killed, "no LISTEN connection found"
        # After reconnecting, the listener reports the earliest pending job (it may have missed
        # notifications meanwhile), then notifications flow again.
        assert await next_wake(wakes) == T0 + timedelta(hours=1)
        await wait_for_listeners(postgres_dsn, 2)  # the writer's reconnects too
        await writer.enqueue(NewJob(kind="k", run_at=T0))
        assert await next_wake(wakes) == T0


async def test_concurrent_migrations_from_several_stores(postgres_dsn):
    opened = []

    async def open_one() -> None:
        async with open_postgres_store(postgres_dsn) as store:
            opened.append(await store.enqueue(NewJob(kind="k")))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(open_one)
    assert len(opened) == 4
    rows = await sql(postgres_dsn, "SELECT version FROM thotto_schema")
    assert [row[0] for row in rows] == [SCHEMA_VERSION]


async def test_a_newer_schema_is_refused(postgres_dsn):
    async with open_postgres_store(postgres_dsn):
        pass
    await sql(postgres_dsn, "UPDATE thotto_schema SET version = $1", SCHEMA_VERSION + 1)
    with pytest.raises(SchemaError, match=f"version {SCHEMA_VERSION + 1}.*upgrade Thotto"):
        async with open_postgres_store(postgres_dsn):
            pass


async def test_a_dead_dsn_is_store_unavailable_with_a_clear_message():
    port = free_port()  # nothing listens there
    dsn = f"postgresql://thotto:s3cret@127.0.0.1:{port}/thotto"
    with pytest.raises(StoreUnavailable) as caught:
        async with open_store(dsn):
            pass
    message = str(caught.value)
    assert f"127.0.0.1:{port}/thotto" in message
    assert "Cannot open the Postgres store" in message
    assert "s3cret" not in message
    assert isinstance(caught.value.__cause__, OSError)


async def test_a_shared_sidecar_outlives_the_store(postgres_dsn):
    async with open_sidecar() as sidecar:
        async with open_postgres_store(postgres_dsn, sidecar=sidecar) as store:
            await store.enqueue(NewJob(kind="k"))
        assert sidecar.running

        async def answer() -> int:
            return 42

        assert await sidecar.run(answer) == 42


async def test_calls_after_close_are_store_unavailable(postgres_dsn):
    async with open_postgres_store(postgres_dsn) as store:
        pass
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.enqueue(NewJob(kind="k"))
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.counts()


async def test_concurrent_single_enqueues_are_group_committed(postgres_dsn):
    """Many concurrent callers each get their own result; dedupe still holds across them."""
    async with open_postgres_store(postgres_dsn) as store:
        results = {}

        async def enqueue(n: int) -> None:
            key = "shared" if n % 10 == 0 else None
            results[n] = await store.enqueue(NewJob(kind="k", dedupe_key=key, payload=b"%d" % n))

        async with trio.open_nursery() as nursery:
            for n in range(200):
                nursery.start_soon(enqueue, n)
        shared = {results[n].job_id for n in range(0, 200, 10)}
        assert len(shared) == 1
        assert sum(results[n].created for n in range(0, 200, 10)) == 1
        others = [results[n] for n in range(200) if n % 10]
        assert all(result.created for result in others)
        assert len({result.job_id for result in others}) == 180
        for n in (1, 57, 199):
            assert (await store.get_job(results[n].job_id)).payload == b"%d" % n


async def test_a_cancelled_caller_leaves_the_store_usable(postgres_dsn):
    async with open_postgres_store(postgres_dsn) as store:
        await store.enqueue_many([NewJob(kind="k") for _ in range(100)])
        with trio.move_on_after(0.0005):
            while True:
                await store.claim("w", 5, 60.0)
        # Whatever was claimed when the cancel landed is held by "w"; the store still works.
        jobs = await store.claim("w", 1000, 60.0)
        held = [job for job in jobs]
        total = sum(c.count for c in await store.counts())
        assert total == 100
        await store.settle("w", [Completed(job.id, job.attempt) for job in held])


@pytest.mark.slow
async def test_survives_a_postgres_restart(postgres_server, postgres_dsn):
    async with two_stores(postgres_dsn) as (writer, wakes):
        await writer.enqueue(NewJob(kind="k", run_at=T0 + timedelta(hours=2)))
        await next_wake(wakes)
        await trio.to_thread.run_sync(postgres_server.stop)
        try:
            with pytest.raises(StoreUnavailable):
                await writer.counts()
        finally:
            await trio.to_thread.run_sync(postgres_server.start)
        # The pool replaces broken connections; a call may fail once before it does.
        with trio.fail_after(20):
            while True:
                try:
                    counts = await writer.counts()
                    break
                except StoreUnavailable:
                    await trio.sleep(0.1)
        assert sum(c.count for c in counts) == 1
        # The listener reconnected and reports the earliest pending job it may have missed.
        assert await next_wake(wakes, 20) == T0 + timedelta(hours=2)
        await wait_for_listeners(postgres_dsn, 2, seconds=20)
        await writer.enqueue(NewJob(kind="k", run_at=T0))
        assert await next_wake(wakes, 10) == T0


def test_wakeup_channel_name_is_stable():
    # Other tools (and older Thotto processes) listen on this name: changing it is a migration.
    assert WAKEUP_CHANNEL == "thotto_wakeup"


async def test_cancelling_a_call_cancels_the_query_and_frees_its_connection(postgres_dsn):
    async with open_postgres_store(postgres_dsn, pool_size=1) as store:
        with trio.fail_after(5):  # the query sleeps 30 s: only a real cancel gets out in time
            with trio.move_on_after(0.2) as scope:
                await store._run(store._fetch, "SELECT pg_sleep(30)")
        assert scope.cancelled_caught
        # The pool's only connection is back and idle: the next call runs at once.
        with trio.fail_after(5):
            assert [c.count for c in await store.counts()] == []
        rows = await sql(
            postgres_dsn,
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep%' "
            "AND state = 'active'",
        )
        assert rows[0][0] == 0


async def test_enqueue_after_the_server_closed_the_lingering_flusher_connection(postgres_dsn, monkeypatch):
    # The enqueue flusher keeps its pool connection between calls; one the server closed
    # meanwhile (a restart, an admin's pg_terminate_backend) is replaced, not used and failed.
    monkeypatch.setattr("thotto.engine.store.postgres.ENQUEUE_LINGER_SECONDS", 60)
    async with open_postgres_store(postgres_dsn) as store:
        first = await store.enqueue(NewJob(kind="k", run_at=T0))
        killed = await sql(
            postgres_dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'thotto'",
        )
        assert killed, "no pool connection found"
        await trio.sleep(0.3)  # the loop reads the server's goodbye
        second = await store.enqueue(NewJob(kind="k", run_at=T0))
        assert second.created and second.job_id > first.job_id
