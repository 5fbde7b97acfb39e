"""Peers: the same enqueue / drain / lateness workload on Thotto and on three other job queues,
in the same run on the same machine.

* huey's ``SqliteHuey`` against Thotto on SQLite; pgqueuer and procrastinate against Thotto on
  Postgres. Install them with the ``bench-peers`` extra.
* ``peers.<system>.enqueue``: jobs/s, one caller enqueueing one job at a time (each system's
  ordinary enqueue call).
* ``peers.<system>.drain``: jobs/s from starting a worker to the last of N due no-op jobs done.
* ``peers.<system>.lateness.p50|p99|max``: ms between a job's due time and its start, for jobs
  scheduled a few seconds ahead while the worker runs.
* The ratio column is Thotto ÷ peer: above 1 Thotto is faster for rates; for lateness, below 1
  Thotto is more punctual. Targets: Thotto's drain ≥ 40x SqliteHuey's and ≥ 10x pgqueuer's.
* ``peers.raw.drain``: the raw claim+complete loop (bench/raw.py, batches of 100) on the same
  number of jobs, shown as a ratio to the peer: no queue on that store drains faster, so when
  that ratio is under a drain target, the target is out of reach on this machine.

Every peer keeps its defaults except worker concurrency, set to Thotto's 8 workers: huey 8
threads, procrastinate ``concurrency=8``, pgqueuer ``max_concurrent_tasks=20`` (its smallest
allowed value: twice its default batch of 10). Those defaults matter for lateness: huey's
scheduler looks for due tasks once a second and idle workers poll with a growing backoff;
procrastinate is woken by NOTIFY when a job is deferred, not when it falls due, so a scheduled job
waits for its 5 s poll. Each peer runs in its own process (``python -m bench.peers SYSTEM``);
Thotto runs in the bench process.

Why: "fast" means little without a reference; these are the queues a Python user would otherwise
pick.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import random
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

import trio

from bench import raw
from bench.common import Result, Stopwatch, Target, latency_results, progress, report
from bench.databases import fresh_postgres_database
from bench.queue import Sizes, bench_engine, drain as thotto_drain, lateness as thotto_lateness

# Thotto's 10k drain against the peer on its store (Thotto ÷ peer).
TARGETS = {
    "sqlite:peers.thotto.drain": Target(">=", 40, of="peers.huey.drain"),
    "postgres:peers.thotto.drain": Target(">=", 10, of="peers.pgqueuer.drain"),
}
# The raw claim+complete loop on the same 10k jobs, against the same peer: the ceiling of any
# queue on that store, so the table shows whether a drain target is within reach at all.
REFERENCES = {
    "sqlite:peers.raw.drain": "peers.huey.drain",
    "postgres:peers.raw.drain": "peers.pgqueuer.drain",
}
STORES = (None,)  # each system picks its own store
WORKERS = 8
PEERS = {"huey": ("sqlite", "huey"), "pgqueuer": ("postgres", "pgqueuer"),
         "procrastinate": ("postgres", "procrastinate")}  # name → (store, module to import)
INSTALL_HINT = "not installed: pip install -e '.[bench-peers]'"
CHILD_TIMEOUT_SECONDS = 600
HIGHER_IS_BETTER = {"enqueue", "drain"}


@dataclass
class Workload:
    enqueue: int
    drain: int
    lateness_jobs: int
    ahead: tuple[float, float]  # lateness jobs fall due this many seconds ahead

    @classmethod
    def pick(cls, quick: bool) -> "Workload":
        return cls(100, 300, 10, (0.5, 1.5)) if quick else cls(2_000, 10_000, 100, (2.0, 4.0))


def installed(peer: str) -> bool:
    return importlib.util.find_spec(PEERS[peer][1]) is not None


async def run(kind: str | None, quick: bool, postgres_dsn: str | None) -> list[Result]:
    workload = Workload.pick(quick)
    thotto = {store: await thotto_figures(store, workload, postgres_dsn) for store in ("sqlite", "postgres")}
    for figures in thotto.values():
        for result in figures.values():
            report(result)
    results = [result for figures in thotto.values() for result in figures.values()]
    for peer, (store, _module) in PEERS.items():
        if not installed(peer):
            progress(f"  peers: {peer} {INSTALL_HINT}")
            results.append(report(Result(f"peers.{peer}.skipped", 0, "", store, {"ratio": INSTALL_HINT})))
            continue
        progress(f"  peers: {peer} on {store} (its own process)")
        try:
            figures = await peer_figures(peer, store, workload, postgres_dsn)
        except (RuntimeError, trio.TooSlowError, OSError) as error:
            note = f"could not run: {error}"[:200]
            progress(f"  peers: {peer} {note}")
            results.append(report(Result(f"peers.{peer}.failed", 0, "", store, {"ratio": note})))
            continue
        for metric, result in figures.items():
            report(result)
            mine = thotto[store][metric].value
            result.params["ratio"] = float(f"{mine / result.value:.3g}") if result.value else None
            results.append(result)
    return results


async def thotto_figures(store: str, workload: Workload, dsn: str | None) -> dict[str, Result]:
    """Thotto's figures for the workload, reusing the queue suite's drain and lateness."""
    progress(f"  peers: thotto on {store}")
    sizes = Sizes(single=workload.enqueue, concurrent=0, batch_total=0, drain=workload.drain,
                  lateness_jobs=workload.lateness_jobs, lateness_ahead=workload.ahead)
    async with bench_engine(store, dsn, run_workers=False) as app:
        with Stopwatch() as watch:
            for _ in range(workload.enqueue):
                await app.engine.enqueue("noop")
    figures = {"enqueue": Result("peers.thotto.enqueue", workload.enqueue / watch.seconds, "jobs/s", store)}
    (drained,) = await thotto_drain(store, sizes, dsn)
    figures["drain"] = Result("peers.thotto.drain", drained.value, "jobs/s", store, {"jobs": workload.drain})
    ceiling = await raw.claim_complete(store, workload.drain, dsn)
    figures["raw_drain"] = Result("peers.raw.drain", ceiling.value, "jobs/s", store,
                                  {**ceiling.params, "system": "raw loop"})
    for result in await thotto_lateness(store, sizes, dsn):
        result.name = result.name.replace("queue.", "peers.thotto.")
        figures[result.name.removeprefix("peers.thotto.")] = result
    for result in figures.values():
        if result.params.get("system") != "raw loop":
            result.params.update(system="thotto", workers=WORKERS)
    return figures


async def peer_figures(peer: str, store: str, workload: Workload, dsn: str | None) -> dict[str, Result]:
    """Run the workload in a child process; its figures as results."""
    with contextlib.ExitStack() as stack:
        database = stack.enter_context(fresh_postgres_database(dsn)) if store == "postgres" else ""
        command = [sys.executable, "-m", "bench.peers", peer, "--dsn", database,
                   "--workload", json.dumps(asdict(workload))]
        with trio.fail_after(CHILD_TIMEOUT_SECONDS):  # cancelling kills and reaps the child
            finished = await trio.run_process(command, capture_stdout=True, capture_stderr=True,
                                              check=False)
    if finished.returncode != 0:
        raise RuntimeError(finished.stderr.decode().strip().splitlines()[-1:] or finished.returncode)
    measured = json.loads(finished.stdout.decode().strip().splitlines()[-1])
    params = {"system": peer, "workers": WORKERS}
    figures = {
        "enqueue": Result(f"peers.{peer}.enqueue", measured["enqueue"], "jobs/s", store,
                          {"jobs": workload.enqueue, **params}),
        "drain": Result(f"peers.{peer}.drain", measured["drain"], "jobs/s", store,
                        {"jobs": workload.drain, **params}),
    }
    for result in latency_results(f"peers.{peer}.lateness", measured["lateness_ms"], store,
                                  {"jobs": workload.lateness_jobs, **params}):
        figures[result.name.removeprefix(f"peers.{peer}.")] = result
    return figures


# --- the peers' workloads, each run in a child process ----------------------------------------


def due_in(workload: Workload) -> list[float]:
    return [random.uniform(*workload.ahead) for _ in range(workload.lateness_jobs)]


def wait_for(condition, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the peer did not finish in time")
        time.sleep(0.001)


async def until_either(event: asyncio.Event, worker: asyncio.Task, timeout: float = 300.0) -> None:
    """Wait for ``event``; a worker that fails first raises its error here instead of a hang."""
    waiter = asyncio.create_task(event.wait())
    await asyncio.wait({waiter, worker}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if worker.done():
        waiter.cancel()
        worker.result()
    if not event.is_set():
        waiter.cancel()
        raise TimeoutError("the peer did not finish in time")


def huey_workload(workload: Workload, _dsn: str) -> dict:
    from huey import SqliteHuey

    with tempfile.TemporaryDirectory(prefix="thotto-huey-") as tmp:
        huey = SqliteHuey(filename=f"{tmp}/huey.db")
        lock, done, late_ms = threading.Lock(), [0], []

        @huey.task()
        def noop() -> None:
            with lock:
                done[0] += 1

        @huey.task()
        def measure(due: float) -> None:
            late_ms.append((time.time() - due) * 1000)

        with Stopwatch() as enqueue:
            for _ in range(workload.enqueue):
                noop()
        huey.flush()  # those were only for timing the enqueue
        for _ in range(workload.drain):
            noop()
        consumer = huey.create_consumer(workers=WORKERS, worker_type="thread")
        with Stopwatch() as drain:
            consumer.start()
            wait_for(lambda: done[0] >= workload.drain)
        for delay in due_in(workload):
            measure.schedule(args=(time.time() + delay,), delay=delay)
        wait_for(lambda: len(late_ms) >= workload.lateness_jobs)
        consumer.stop(graceful=True)
    return {"enqueue": workload.enqueue / enqueue.seconds, "drain": workload.drain / drain.seconds,
            "lateness_ms": late_ms}


async def pgqueuer_workload(workload: Workload, dsn: str) -> dict:
    import asyncpg
    from pgqueuer import AsyncpgDriver, QueueManager, Queries

    queries = Queries(AsyncpgDriver(await asyncpg.connect(dsn)))
    await queries.install()
    with Stopwatch() as enqueue:
        for _ in range(workload.enqueue):
            await queries.enqueue("enqueue_only", None)  # never consumed: no worker has it
    await queries.enqueue(["noop"] * workload.drain, [None] * workload.drain, [0] * workload.drain)

    late_ms: list[float] = []
    done = [0]
    manager = QueueManager(Queries(AsyncpgDriver(await asyncpg.connect(dsn))))

    @manager.entrypoint("noop")
    async def noop(job) -> None:
        done[0] += 1
        if done[0] >= workload.drain:
            drained.set()

    @manager.entrypoint("measure")
    async def measure(job) -> None:
        late_ms.append((datetime.now(timezone.utc) - job.execute_after).total_seconds() * 1000)
        if len(late_ms) >= workload.lateness_jobs:
            manager.shutdown.set()

    drained = asyncio.Event()
    worker = asyncio.create_task(manager.run(max_concurrent_tasks=20))
    with Stopwatch() as drain:
        await until_either(drained, worker)
    for delay in due_in(workload):
        await queries.enqueue("measure", None, execute_after=timedelta(seconds=delay))
    await asyncio.wait_for(worker, 300)
    return {"enqueue": workload.enqueue / enqueue.seconds, "drain": workload.drain / drain.seconds,
            "lateness_ms": late_ms}


async def procrastinate_workload(workload: Workload, dsn: str) -> dict:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
    late_ms: list[float] = []

    @app.task(name="enqueue_only", queue="enqueue_only")
    async def enqueue_only() -> None:
        pass

    @app.task(name="noop")
    async def noop() -> None:
        pass

    @app.task(name="measure", pass_context=True)
    async def measure(context) -> None:
        late_ms.append((datetime.now(timezone.utc) - context.job.scheduled_at).total_seconds() * 1000)

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        with Stopwatch() as enqueue:
            for _ in range(workload.enqueue):
                await enqueue_only.defer_async()
        await noop.batch_defer_async(*[{} for _ in range(workload.drain)])
        with Stopwatch() as drain:  # wait=False: the worker stops once it has caught up
            await app.run_worker_async(concurrency=WORKERS, wait=False, queues=["default"])
        now = datetime.now(timezone.utc)
        for delay in due_in(workload):
            await measure.configure(schedule_at=now + timedelta(seconds=delay)).defer_async()
        worker = asyncio.create_task(app.run_worker_async(concurrency=WORKERS, queues=["default"]))
        deadline = time.monotonic() + 300
        while len(late_ms) < workload.lateness_jobs and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    return {"enqueue": workload.enqueue / enqueue.seconds, "drain": workload.drain / drain.seconds,
            "lateness_ms": late_ms}


def child_main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers")
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("--dsn", default="")
    parser.add_argument("--workload", required=True, help="the Workload as JSON")
    args = parser.parse_args()
    values = json.loads(args.workload)
    workload = Workload(**{**values, "ahead": tuple(values["ahead"])})
    if args.peer == "huey":
        figures = huey_workload(workload, args.dsn)
    else:
        figures = asyncio.run(globals()[f"{args.peer}_workload"](workload, args.dsn))
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    child_main()
