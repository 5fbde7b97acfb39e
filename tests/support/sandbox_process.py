"""The Reddit sandbox in a child process: ``python -m tests.support.sandbox_process --port P
--data-dir DIR``. What ``thotto sandbox`` serves, without depending on the CLI module; the rate
budget is effectively unlimited. SIGINT/SIGTERM stop it gracefully."""

from __future__ import annotations

import argparse
import signal
from functools import partial

import trio

from thotto.reddit.sandbox import SandboxConfig, serve_sandbox


async def main(args: argparse.Namespace) -> None:
    config = SandboxConfig(rate_budget=10_000_000)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve_sandbox, "127.0.0.1", args.port, args.data_dir,
                                        config=config, grace_seconds=0.5))
            async for _ in signals:
                nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    trio.run(main, parser.parse_args())
