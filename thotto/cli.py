"""The ``thotto`` command. ``python run.py`` is ``thotto serve`` on embedded defaults.

Human-readable tables by default, ``--json`` for scripts. User mistakes (a bad setting, a locked
database, an unknown user) end with one clear line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence

import trio

from thotto import __version__
from thotto.config import Role, load_settings
from thotto.errors import ThottoError
from thotto.messages import PostStatus, Tier
from thotto.messages import Role as UserRole

EXIT_OK = 0
EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thotto", description="Self-hosted Reddit post scheduler.")
    parser.add_argument("--version", action="version", version=f"thotto {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parsers(commands)
    _admin_parsers(commands)
    _post_parsers(commands)
    bench = commands.add_parser("bench", help="run benchmarks (python -m bench --help)", add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    return parser


def _serve_parsers(commands) -> None:
    serve = commands.add_parser("serve", help="run Thotto (API and workers) until SIGINT/SIGTERM")
    _add_settings_options(serve)
    serve.add_argument("--role", choices=[role.value for role in Role], help="all (default), api, or worker")
    serve.add_argument("--demo", action="store_true",
                       help="also run the Reddit sandbox in-process and post to it (try Thotto without Reddit)")
    serve.add_argument("--demo-unless-configured", action="store_true",
                       help="--demo when no Reddit app is configured (what run.py does)")
    init = commands.add_parser("init", help="create the data dir, database, encryption key, an admin and a token")
    init.add_argument("--admin", default="admin", help="the admin user's name (default: admin)")
    _add_settings_options(init, json=True)
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema, then exit")
    _add_settings_options(migrate)
    status = commands.add_parser("status", help="queue counts, cron jobs and (from a running server) breakers")
    _add_settings_options(status, json=True)
    sandbox = commands.add_parser("sandbox", help="serve the Reddit-compatible sandbox until SIGINT/SIGTERM")
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sandbox.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    sandbox.add_argument("--data-dir", default="sandbox-data", help="where the durable record of posts lives")
    sandbox.add_argument("--token-lifetime", type=float, default=3600.0, help="access token lifetime, seconds")
    sandbox.add_argument("--rate-budget", type=int, default=1000, help="requests per app per 10 minutes")
    openapi = commands.add_parser("openapi", help="print the API's OpenAPI 3.1 document")
    openapi.add_argument("--markdown", action="store_true", help="as the Markdown reference (docs/api.md)")
    commands.add_parser("settings", help="print the settings reference table (Markdown)")


def _admin_parsers(commands) -> None:
    user = _group(commands, "user", "manage users")
    user_add = user.add_parser("add", help="create a user")
    user_add.add_argument("name", help="1-64 letters, digits, '_', '.', ':' or '-'")
    user_add.add_argument("--tier", choices=[tier.value for tier in Tier], default="free")
    user_add.add_argument("--role", dest="user_role", choices=[role.value for role in UserRole], default="user")
    _add_settings_options(user_add, json=True)
    _add_settings_options(user.add_parser("list", help="list users"), json=True)
    set_tier = user.add_parser("set-tier", help="change a user's tier")
    set_tier.add_argument("name")
    set_tier.add_argument("tier", choices=[tier.value for tier in Tier])
    _add_settings_options(set_tier, json=True)
    remove = user.add_parser("remove", help="remove a user: tokens stop working, scheduled posts are "
                                            "cancelled, linked Reddit credentials are erased")
    remove.add_argument("name")
    _add_settings_options(remove, json=True)

    token = _group(commands, "token", "manage API tokens")
    create = token.add_parser("create", help="create an API token (shown once)")
    create.add_argument("--user", required=True)
    create.add_argument("--name", default="cli", help="a label for the token")
    _add_settings_options(create, json=True)
    token_list = token.add_parser("list", help="list a user's tokens")
    token_list.add_argument("--user", required=True)
    _add_settings_options(token_list, json=True)
    revoke = token.add_parser("revoke", help="revoke a token by id (running servers stop accepting it)")
    revoke.add_argument("id", type=int)
    _add_settings_options(revoke, json=True)

    account = _group(commands, "account", "manage linked Reddit accounts")
    link = account.add_parser("link", help="link a Reddit account with a script app's password grant")
    link.add_argument("--user", required=True, help="the Thotto user who will post with it")
    link.add_argument("--reddit-username", required=True)
    link.add_argument("--password-stdin", action="store_true",
                      help="read the Reddit password from standard input instead of prompting")
    _add_settings_options(link, json=True)
    account_list = account.add_parser("list", help="list a user's linked accounts")
    account_list.add_argument("--user", required=True)
    _add_settings_options(account_list, json=True)


def _post_parsers(commands) -> None:
    post = _group(commands, "post", "schedule, list and cancel posts")
    schedule = post.add_parser("schedule", help="schedule a post (same rules as the API)")
    schedule.add_argument("--user", required=True)
    schedule.add_argument("--subreddit", action="append", help="repeat to post to several")
    schedule.add_argument("--title")
    schedule.add_argument("--text")
    schedule.add_argument("--url")
    schedule.add_argument("--image", help="path of an image file")
    schedule.add_argument("--at", dest="scheduled_for",
                          help="when: ISO 8601 with offset (2026-12-01T09:00:00+01:00) or +30s/+10m/+2h/+1d")
    schedule.add_argument("--account", help="the linked Reddit account (if the user has several)")
    schedule.add_argument("--nsfw", action="store_true")
    schedule.add_argument("--spoiler", action="store_true")
    schedule.add_argument("--file", help="a JSON file holding a list of posts as the API takes them")
    _add_settings_options(schedule, json=True)
    post_list = post.add_parser("list", help="list a user's posts")
    post_list.add_argument("--user", required=True)
    post_list.add_argument("--status", choices=[status.value for status in PostStatus])
    post_list.add_argument("--limit", type=int, default=50)
    _add_settings_options(post_list, json=True)
    cancel = post.add_parser("cancel", help="cancel a scheduled post")
    cancel.add_argument("--user", required=True)
    cancel.add_argument("id", type=int)
    _add_settings_options(cancel, json=True)


def _group(commands, name: str, help: str):
    return commands.add_parser(name, help=help).add_subparsers(dest="subcommand", required=True,
                                                               metavar="SUBCOMMAND")


def _add_settings_options(parser: argparse.ArgumentParser, *, json: bool = False) -> None:
    parser.add_argument("--config", help="a TOML settings file (also THOTTO_CONFIG)")
    parser.add_argument("--data-dir", help="where local state lives (also THOTTO_DATA_DIR)")
    parser.add_argument("--database-url", help="sqlite:///path or postgresql://... (also THOTTO_DATABASE_URL)")
    if json:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        from bench.__main__ import main as bench_main

        return bench_main(args.bench_args)
    try:
        if args.command in ("openapi", "settings", "sandbox"):
            from thotto import commands

            return trio.run(getattr(commands, args.command), args)
        settings = load_settings(args.config, data_dir=args.data_dir, database_url=args.database_url,
                                 role=getattr(args, "role", None))
        from thotto import commands, logs

        logs.configure(settings.log_level, json_lines=settings.log_format.value == "json",
                       secrets=(settings.reddit_client_secret, settings.encryption_key))
        command = commands.COMMANDS[(args.command, getattr(args, "subcommand", None))]
        if args.command == "account" and args.subcommand == "link":
            args.password = _read_password(args)
        return trio.run(command, settings, args)
    except ThottoError as error:
        print(f"thotto: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass(f"Reddit password for u/{args.reddit_username}: ")


if __name__ == "__main__":
    sys.exit(main())
