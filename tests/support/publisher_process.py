"""A Thotto process that publishes posts, for kill -9 tests: ``python -m
tests.support.publisher_process --dsn DSN --data-dir DIR --reddit-url URL``.

Runs the engine (with Reddit configured against a sandbox) until SIGINT/SIGTERM; prints
``ready`` once serving.
"""

from __future__ import annotations

import argparse

import trio

from tests.reddit.conftest import CLIENT_ID, CLIENT_SECRET
from thotto.app import open_app
from thotto.config import Settings


def settings_for(dsn: str, data_dir: str, reddit_url: str) -> Settings:
    """The settings the test and its publisher processes share."""
    return Settings(
        database_url=dsn, data_dir=data_dir, reddit_url=reddit_url, reddit_client_id=CLIENT_ID,
        reddit_client_secret=CLIENT_SECRET, reddit_requests_per_minute=6000, lease_seconds=3,
        sweep_interval_seconds=0.5, shutdown_grace_seconds=1, reddit_reconcile_settle_seconds=1,
    )


async def main(args: argparse.Namespace) -> None:
    async with open_app(settings_for(args.dsn, args.data_dir, args.reddit_url)) as app:
        async with trio.open_nursery() as nursery:
            await nursery.start(app.tree.stop_on_signals)
            print("ready", flush=True)
            await app.tree.wait_stopped()
            nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--reddit-url", required=True)
    trio.run(main, parser.parse_args())
