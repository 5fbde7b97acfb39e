"""A Thotto worker process for multi-process tests: ``python -m tests.support.worker_process``.

It runs the engine on a shared Postgres database with two handlers: ``record`` appends one line
per run to ``--log`` (``job_id attempt owner start end`` as wall-clock seconds) and ``slow``
does the same after sleeping ``--slow-seconds``. Lines are written with O_APPEND, so several
processes can share one log; a killed process may leave a started-but-unfinished run unlogged,
which is the point (its job must be recovered by another process). Prints ``ready`` on stdout once
serving. SIGINT/SIGTERM stop it as they stop ``thotto serve``.
"""

from __future__ import annotations

import argparse
import os
import time

import trio

from thotto.app import open_app
from thotto.config import Settings


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--lease-seconds", type=float, default=30.0)
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    settings = Settings(database_url=args.dsn, workers=args.workers, lease_seconds=args.lease_seconds,
                        sweep_interval_seconds=0.5, shutdown_grace_seconds=1.0)
    log_fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    async with open_app(settings) as app:

        def write(ctx, started: float) -> None:
            line = f"{ctx.job.id} {ctx.attempt} {app.engine.owner} {started:.6f} {time.time():.6f}\n"
            os.write(log_fd, line.encode())

        async def record(ctx) -> None:
            write(ctx, time.time())

        async def slow(ctx) -> None:
            started = time.time()
            await trio.sleep(args.slow_seconds)
            write(ctx, started)

        app.engine.register_handler("record", record)
        app.engine.register_handler("slow", slow, timeout_seconds=600)
        async with trio.open_nursery() as nursery:
            await nursery.start(app.tree.stop_on_signals)
            print("ready", flush=True)
            await app.tree.wait_stopped()
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, parse())
