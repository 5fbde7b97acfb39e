"""The ``thotto`` command. ``python run.py`` is ``thotto serve`` on embedded defaults.

User mistakes (a bad setting, a locked database) end with one clear line on stderr and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence

import trio

from thotto import __version__
from thotto.config import Role, Settings, load_settings
from thotto.messages import NewUser, Tier, validated
from thotto.messages import Role as UserRole
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

    user = commands.add_parser("user", help="manage users").add_subparsers(
        dest="subcommand", required=True, metavar="SUBCOMMAND")
    user_add = user.add_parser("add", help="create a user")
    user_add.add_argument("name", help="1-64 letters, digits, '_', '.', ':' or '-'")
    user_add.add_argument("--tier", choices=[tier.value for tier in Tier], default="free")
    user_add.add_argument("--role", dest="user_role", choices=[role.value for role in UserRole],
                          default="user")
    _add_settings_options(user_add)

    account = commands.add_parser("account", help="manage linked Reddit accounts").add_subparsers(
        dest="subcommand", required=True, metavar="SUBCOMMAND")
    link = account.add_parser("link", help="link a Reddit account with a script app's password grant")
    link.add_argument("--user", required=True, help="the Thotto user who will post with it")
    link.add_argument("--reddit-username", required=True)
    link.add_argument("--password-stdin", action="store_true",
                      help="read the Reddit password from standard input instead of prompting")
    _add_settings_options(link)

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
        command = COMMANDS[(args.command, getattr(args, "subcommand", None))]
        return trio.run(command, settings, args)
    except ThottoError as error:
        print(f"thotto: {error}", file=sys.stderr)
        return EXIT_USER_ERROR


async def serve(settings: Settings, args: argparse.Namespace) -> int:
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


async def migrate(settings: Settings, args: argparse.Namespace) -> int:
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


async def user_add(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.store import open_store

    _ensure_data_dir(settings)
    new_user = validated(NewUser(name=args.name, tier=Tier(args.tier), role=UserRole(args.user_role)))
    async with open_store(settings.resolved_database_url()) as store:
        user = await store.create_user(new_user)
    print(f"user {user.name} (id {user.id}, tier {user.tier.value}, role {user.role.value}) created")
    return EXIT_OK


async def account_link(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.engine import open_engine

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass(
        f"Reddit password for u/{args.reddit_username}: ")
    _ensure_data_dir(settings)
    async with open_engine(settings, run_workers=False) as engine:
        user = await engine.store.get_user_by_name(args.user)
        account = await engine.link_account(user.id, args.reddit_username, password)
    print(f"u/{account.reddit_username} linked to {user.name} (account id {account.id}); "
          "its password is stored encrypted")
    return EXIT_OK


COMMANDS = {
    ("serve", None): serve,
    ("migrate", None): migrate,
    ("user", "add"): user_add,
    ("account", "link"): account_link,
}


if __name__ == "__main__":
    sys.exit(main())
