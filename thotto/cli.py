"""The ``thotto`` command. ``python run.py`` is ``thotto serve`` on embedded defaults.

User mistakes (a bad setting, a locked database) end with one clear line on stderr and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import trio

from thotto import __version__
from thotto.config import Role, Settings, load_settings
from thotto.errors import ThottoError

EXIT_OK = 0
EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thotto", description="Self-hosted Reddit post scheduler.")
    parser.add_argument("--version", action="version", version=f"thotto {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run Thotto until SIGINT/SIGTERM")
    _add_settings_options(serve)
    serve.add_argument("--role", choices=[role.value for role in Role],
                       help="all (default), api, or worker")

    migrate = commands.add_parser("migrate", help="create or upgrade the database schema, then exit")
    _add_settings_options(migrate)

    sandbox = commands.add_parser("sandbox", help="serve the Reddit-compatible sandbox until SIGINT/SIGTERM")
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sandbox.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    sandbox.add_argument("--data-dir", default="sandbox-data", help="where the durable record of posts lives")
    sandbox.add_argument("--token-lifetime", type=float, default=3600.0, help="access token lifetime, seconds")
    sandbox.add_argument("--rate-budget", type=int, default=1000, help="requests per app per 10 minutes")

    bench = commands.add_parser("bench", help="run benchmarks (python -m bench --help)", add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    return parser


def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="a TOML settings file (also THOTTO_CONFIG)")
    parser.add_argument("--data-dir", help="where local state lives (also THOTTO_DATA_DIR)")
    parser.add_argument("--database-url", help="sqlite:///path or postgresql://... (also THOTTO_DATABASE_URL)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        from bench.__main__ import main as bench_main

        return bench_main(args.bench_args)
    if args.command == "sandbox":
        return trio.run(sandbox, args)
    try:
        settings = load_settings(args.config, data_dir=args.data_dir, database_url=args.database_url,
                                 role=getattr(args, "role", None))
        from thotto import logs

        logs.configure(settings.log_level, json_lines=settings.log_format.value == "json")
        return trio.run(COMMANDS[args.command], settings)
    except ThottoError as error:
        print(f"thotto: {error}", file=sys.stderr)
        return EXIT_USER_ERROR


async def serve(settings: Settings) -> int:
    """Run the engine until a signal: the first stops gracefully, a second stops now."""
    from thotto.engine import open_engine

    _ensure_data_dir(settings)
    async with open_engine(settings) as engine:
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.tree.stop_on_signals)
            print(f"thotto {__version__}: serving (role {settings.role.value}, "
                  f"store {engine.store.name}); Ctrl-C stops", file=sys.stderr, flush=True)
            await engine.tree.wait_stopped()
            nursery.cancel_scope.cancel()
    return EXIT_OK


async def migrate(settings: Settings) -> int:
    """Opening a store creates or upgrades its schema."""
    from thotto.store import open_store

    _ensure_data_dir(settings)
    async with open_store(settings.resolved_database_url()) as store:
        print(f"thotto: {store.name} schema is up to date", file=sys.stderr)
    return EXIT_OK


async def sandbox(args: argparse.Namespace) -> int:
    """Serve the Reddit sandbox (thotto/reddit/sandbox.py); a signal stops it gracefully."""
    import signal
    from functools import partial

    from thotto.reddit.sandbox import SandboxConfig, serve_sandbox

    config = SandboxConfig(token_lifetime=args.token_lifetime, rate_budget=args.rate_budget)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            try:
                port = await nursery.start(partial(serve_sandbox, args.host, args.port, args.data_dir,
                                                   config=config))
            except OSError as error:
                print(f"thotto: cannot serve the sandbox on {args.host}:{args.port}: {error}",
                      file=sys.stderr)
                return EXIT_USER_ERROR
            print(f"thotto sandbox: listening on http://{args.host}:{port} (data in {args.data_dir}); "
                  "Ctrl-C stops", file=sys.stderr, flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
    return EXIT_OK


def _ensure_data_dir(settings: Settings) -> None:
    import os

    os.makedirs(settings.data_dir, exist_ok=True)


COMMANDS = {"serve": serve, "migrate": migrate}
