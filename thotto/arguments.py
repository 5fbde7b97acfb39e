"""The ``thotto`` command's arguments: one argparse parser for the CLI and for the server that
runs a command the CLI sent over the control socket (:mod:`thotto.control`)."""

from __future__ import annotations

import argparse

from thotto import __version__
from thotto.engine.config import ProcessRole
from thotto.engine.jobs import JobState
from thotto.scheduler.records import PostStatus, Role as UserRole, Tier


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thotto", description="Self-hosted Reddit post scheduler.")
    parser.add_argument("--version", action="version", version=f"thotto {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parsers(commands)
    _admin_parsers(commands)
    _post_parsers(commands)
    _media_parsers(commands)
    _operator_parsers(commands)
    return parser


def _serve_parsers(commands) -> None:
    serve = commands.add_parser("serve", help="run Thotto (API and workers) until SIGINT/SIGTERM")
    _add_settings_options(serve)
    serve.add_argument("--role", choices=[role.value for role in ProcessRole], help="all (default), api, or worker")
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
    password_link = user.add_parser("password-link", help="a new one-time link for a user to set their "
                                    "password and sign in to the app")
    password_link.add_argument("name")
    _add_settings_options(password_link, json=True)
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
    post = _group(commands, "post", "schedule, list, show, edit and cancel posts")
    schedule = post.add_parser("schedule", help="schedule a post (same rules as the API)")
    schedule.add_argument("--user", required=True)
    schedule.add_argument("--subreddit", action="append", help="repeat to post to several")
    schedule.add_argument("--title")
    schedule.add_argument("--text")
    schedule.add_argument("--url")
    schedule.add_argument("--image", action="append", metavar="FILE",
                          help="an image to upload and post (PNG, JPEG, GIF, WebP); repeat for a gallery")
    schedule.add_argument("--caption", action="append", metavar="TEXT",
                          help="with a gallery: each image's caption, in the order of --image")
    _add_when_option(schedule)
    schedule.add_argument("--account", help="the linked Reddit account (if the user has several)")
    schedule.add_argument("--nsfw", action="store_true")
    schedule.add_argument("--spoiler", action="store_true")
    _add_flair_options(schedule)
    schedule.add_argument("--repeat", choices=["daily", "weekly", "monthly"], help="make it recurring")
    schedule.add_argument("--every", type=int, default=1, help="with --repeat: every N days/weeks/months")
    schedule.add_argument("--until", help="with --repeat: the last time it may run (like --at)")
    schedule.add_argument("--count", type=int, help="with --repeat: how many times in all")
    schedule.add_argument("--file", help="a JSON file holding a list of posts as the API takes them")
    _add_settings_options(schedule, json=True, zone=True)
    post_list = post.add_parser("list", help="list a user's posts, with why each failed")
    post_list.add_argument("--user", required=True)
    post_list.add_argument("--status", choices=[status.value for status in PostStatus])
    post_list.add_argument("--limit", type=int, default=50)
    _add_settings_options(post_list, json=True, zone=True)
    show = post.add_parser("show", help="one post with its attempts, errors and Reddit link")
    show.add_argument("--user", required=True)
    show.add_argument("id", type=int)
    _add_settings_options(show, json=True, zone=True)
    edit = post.add_parser("edit", help="edit or reschedule a scheduled post (same rules as the API)")
    edit.add_argument("--user", required=True)
    edit.add_argument("id", type=int)
    edit.add_argument("--title")
    edit.add_argument("--text")
    edit.add_argument("--url")
    _add_when_option(edit)
    edit.add_argument("--nsfw", action=argparse.BooleanOptionalAction, default=None)
    edit.add_argument("--spoiler", action=argparse.BooleanOptionalAction, default=None)
    _add_flair_options(edit)
    _add_settings_options(edit, json=True, zone=True)
    cancel = post.add_parser("cancel", help="cancel a scheduled post")
    cancel.add_argument("--user", required=True)
    cancel.add_argument("id", type=int)
    _add_settings_options(cancel, json=True, zone=True)


def _media_parsers(commands) -> None:
    media = _group(commands, "media", "upload images to a user's media library")
    upload = media.add_parser("upload", help="upload an image for a user, as POST /api/media does "
                                             "(its location and camera metadata removed)")
    upload.add_argument("path", metavar="FILE", help="a PNG, JPEG, GIF or WebP image")
    upload.add_argument("--user", required=True, help="the Thotto user whose library it joins")
    upload.add_argument("--keep-metadata", action="store_true",
                        help="keep its metadata (EXIF with GPS and camera, XMP, IPTC, comments)")
    _add_settings_options(upload, json=True)


def _add_when_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--at", dest="scheduled_for",
                        help="when: +30s/+10m/+2h/+1d from now, or a date and time (2026-12-01T09:00, "
                             "in --tz unless it has an offset)")


def _add_flair_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flair-id", help="the id of one of the subreddit's flair templates")
    parser.add_argument("--flair-text", help="the flair's text, where the template lets you edit it")


def _operator_parsers(commands) -> None:
    jobs = _group(commands, "jobs", "search and act on jobs (admin)")
    job_list = jobs.add_parser("list", help="search jobs, newest first")
    _add_job_filters(job_list)
    job_list.add_argument("--state", choices=[state.value for state in JobState])
    job_list.add_argument("--limit", type=int, default=50, help="1-500 (default 50)")
    job_list.add_argument("--cursor", help="the next page's cursor, as the previous page printed")
    _add_settings_options(job_list, json=True, zone=True)
    for name, help in (("show", "a job: payload, attempts, errors, its post"),
                       ("retry", "run a job now (a dead one only where a retry can succeed)"),
                       ("cancel", "cancel a waiting job (a post's job cancels the post)")):
        command = jobs.add_parser(name, help=help)
        command.add_argument("id", type=int)
        _add_settings_options(command, json=True)
    redrive = jobs.add_parser("redrive", help="redrive dead jobs: by id, or --all matching filters")
    redrive.add_argument("ids", type=int, nargs="*", help="job ids")
    redrive.add_argument("--all", action="store_true", help="every dead job matching the filters")
    _add_job_filters(redrive)
    _add_settings_options(redrive, json=True, zone=True)

    queue = _group(commands, "queue", "pause, resume and list queues (admin)")
    _add_settings_options(queue.add_parser("list", help="queues, their counts, and which are paused"),
                          json=True)
    for name, help in (("pause", "stop every process from claiming the queue's jobs (durable)"),
                       ("resume", "let the queue's jobs run again")):
        command = queue.add_parser(name, help=help)
        command.add_argument("queue")
        _add_settings_options(command, json=True)


def _add_job_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue")
    parser.add_argument("--kind")
    parser.add_argument("--from", dest="run_from", help="due at or after: a date and time (in --tz "
                                                         "unless it has an offset), or +1h / -2d")
    parser.add_argument("--to", dest="run_to", help="due before: a date and time, or +1h / -2d")


def _group(commands, name: str, help: str):
    return commands.add_parser(name, help=help).add_subparsers(dest="subcommand", required=True,
                                                               metavar="SUBCOMMAND")


def _add_settings_options(parser: argparse.ArgumentParser, *, json: bool = False, zone: bool = False) -> None:
    if zone:
        parser.add_argument("--tz", help="IANA time zone for times shown and --at/--until without an "
                                         "offset (default: this machine's, or TZ)")
    parser.add_argument("--config", help="a TOML settings file (also THOTTO_CONFIG)")
    parser.add_argument("--data-dir", help="where local state lives (also THOTTO_DATA_DIR)")
    parser.add_argument("--database-url", help="sqlite:///path or postgresql://... (also THOTTO_DATABASE_URL)")
    if json:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
