"""A Thotto process for the chaos suite: ``python -m tests.support.chaos_process [options]``.

It is ``thotto serve`` minus the parts the chaos tests must not depend on: settings come from the
``THOTTO_*`` environment exactly as ``thotto serve`` reads them (``load_settings``), the engine
runs its whole supervision tree, and SIGINT/SIGTERM stop it the same way (first gracefully, a
second at once; exit code 0). On top of that:

* ``--breaker-open-seconds S`` shortens how long Reddit's breakers stay open (the real 30 s would
  make a compressed outage take minutes to recover from);
* the wall clock can be off and jump: it starts ``--clock-offset-seconds`` away from the system
  clock, and each SIGUSR1 moves it ``--jump-seconds`` forward (an NTP step, a VM resumed from
  suspend), for the store, the ticker's sleeps and the leases alike.

With ``--serve-api`` it serves the HTTP API too, on ``THOTTO_API_HOST:THOTTO_API_PORT``. Prints
``ready`` on stdout once serving; logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from datetime import datetime, timedelta

import trio

from thotto import logs
from thotto.app import open_app
from thotto.config import load_settings
from thotto.engine.clock import SystemClock
from thotto.services import REDDIT_BREAKER


class JumpingClock(SystemClock):
    """The system clock plus an offset, which :meth:`jump` moves (see the module docstring)."""

    def __init__(self, offset_seconds: float = 0.0) -> None:
        self.offset = timedelta(seconds=offset_seconds)

    def jump(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)

    def now(self) -> datetime:
        return super().now() + self.offset

    def deadline(self, at: datetime) -> float:
        return trio.current_time() + (at - self.now()).total_seconds()


async def jump_on_sigusr1(clock: JumpingClock, seconds: float, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        task_status.started()
        async for _ in signals:
            clock.jump(seconds)
            logging.getLogger("thotto.chaos").warning("clock jumped %g s forward (offset now %s)",
                                                      seconds, clock.offset)
            print("jumped", flush=True)


async def main(args: argparse.Namespace) -> None:
    settings = load_settings()
    logs.configure(settings.log_level, json_lines=False)
    clock = JumpingClock(args.clock_offset_seconds)
    async with open_app(settings, clock=clock, serve_api=args.serve_api) as app:
        if args.breaker_open_seconds is not None:
            app.services.breakers.configure(
                "reddit.*", REDDIT_BREAKER.with_(open_seconds=args.breaker_open_seconds))
        async with trio.open_nursery() as nursery:
            await nursery.start(app.tree.stop_on_signals)
            await nursery.start(jump_on_sigusr1, clock, args.jump_seconds)
            print("ready", flush=True)
            await app.tree.wait_stopped()
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--breaker-open-seconds", type=float)
    parser.add_argument("--jump-seconds", type=float, default=3600.0)
    parser.add_argument("--clock-offset-seconds", type=float, default=0.0)
    parser.add_argument("--serve-api", action="store_true", help="serve the HTTP API (THOTTO_API_PORT)")
    trio.run(main, parser.parse_args())
    sys.exit(0)
