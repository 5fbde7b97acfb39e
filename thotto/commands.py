"""What each ``thotto`` command does (the argument parsing is in :mod:`thotto.cli`).

Each command is ``async def command(settings, args) -> exit code``. A command parses its flags,
calls the use case (:mod:`thotto.usecases`) the API calls for the same action (same checks, same
invalidations) and prints the outcome.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import trio

import actors

from thotto import __version__
from thotto.config import Settings
from thotto.control import console, serving_app
from thotto.engine.errors import ThottoError, ValidationError
from thotto.engine.jobs import utcnow
from thotto.scheduler.records import NewUser, Role, ScheduleRequest, Tier, User

EXIT_OK = 0
EXIT_USER_ERROR = 2
ADMIN_TIER = Tier.PREMIUM
DEMO_CLIENT_ID = "thotto-demo"
DEMO_ACCOUNT = "demo_creator"


# --- output ----------------------------------------------------------------------------------


def emit(args: argparse.Namespace, value: Any, columns: Sequence[str] | None = None) -> None:
    """Print ``value`` (a struct or a list of structs) as JSON with ``--json`` (times in UTC, as
    the API gives them), else as a table of ``columns`` (a struct alone: one ``name: value`` line
    per field) with times in ``--tz``."""
    builtins = msgspec.to_builtins(value)
    if getattr(args, "json", False):
        out(msgspec.json.encode(builtins).decode())
        return
    builtins = _local_times(builtins, _zone(args))
    if isinstance(builtins, list):
        print_table(builtins, columns or (list(builtins[0]) if builtins else []))
    else:
        width = max(map(len, builtins), default=0)
        for key, item in builtins.items():
            if isinstance(item, list) and item and isinstance(item[0], dict):
                out(f"{key}:")
                print_table(item, list(item[0]))
            else:
                out(f"{key:<{width}}  {_cell(item)}")


ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _zone(args: argparse.Namespace) -> tzinfo:
    """The zone of ``--tz``, else the TZ environment variable's, else this machine's."""
    name = getattr(args, "tz", None) or os.environ.get("TZ")
    if not name:
        return datetime.now().astimezone().tzinfo
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"--tz {name!r} is not an IANA time zone (e.g. Europe/Berlin, America/New_York)") from None


def _local_times(value: Any, zone: tzinfo) -> Any:
    """``value`` with every ISO 8601 time in it shown in ``zone``, to the minute ("2026-12-02
    09:30 CET"): what a person reads in a table."""
    if isinstance(value, dict):
        return {key: _local_times(item, zone) for key, item in value.items()}
    if isinstance(value, list):
        return [_local_times(item, zone) for item in value]
    if isinstance(value, str) and ISO_TIME.match(value):
        return datetime.fromisoformat(value).astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
    return value


def print_table(rows: list[dict], columns: Sequence[str]) -> None:
    if not rows:
        out("(none)")
        return
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    out("  ".join(column.upper().ljust(width) for column, width in zip(columns, widths)).rstrip())
    for line in cells:
        out("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def out(text: str = "") -> None:
    """A line of the command's output (the terminal's stdout, or the CLI's over the control
    socket when a server runs the command)."""
    print(text, file=console().out)


def say(message: str) -> None:
    """Progress and notes go to stderr, so ``--json`` output stays parseable."""
    print(message, file=console().err, flush=True)


# --- opening things ----------------------------------------------------------------------------


def _ensure_data_dir(settings: Settings) -> None:
    from thotto.files import keep_data_private
    from thotto.store import sqlite_file

    keep_data_private(settings.data_dir, sqlite_file(settings.resolved_database_url()),
                      uses_key_file=not settings.encryption_key)


@contextlib.asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[Any]:
    """The store: the running server's when it runs this command, else opened for it."""
    from thotto.store import open_store

    app = serving_app()
    if app is not None:
        yield app.store
        return
    _ensure_data_dir(settings)
    async with open_store(settings.resolved_database_url()) as store:
        yield store


@contextlib.asynccontextmanager
async def _admin(settings: Settings) -> AsyncIterator[tuple[Any, Any]]:
    """The store and a cache that reaches the running servers' caches (through Redis, else the
    store's broadcasts), for commands that change who may do what (:mod:`thotto.usecases.users`):
    without it a revoked token would stay valid in running servers until their cache let go."""
    from thotto.cache import Cache, CacheConfig

    app = serving_app()
    if app is not None:  # the server runs this command: its own cache is the one to evict
        yield app.store, app.services.cache
        return
    # An error from the command comes out as itself (one clear line), not in a group.
    with actors.unwrap_sole_exception():
        async with _store(settings) as store, trio.open_nursery() as nursery:
            cache = Cache(CacheConfig.from_settings(settings), bus=store)
            await nursery.start(cache.run)
            yield store, cache
            nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def _app(settings: Settings) -> AsyncIterator[Any]:
    """The app for commands that schedule or link: the running server's when it runs this
    command, else one opened without workers or HTTP."""
    from thotto.app import open_app

    app = serving_app()
    if app is not None:
        yield app
        return
    _ensure_data_dir(settings)
    async with open_app(settings, run_workers=False) as app:
        yield app


# --- serve, init, migrate, status ----------------------------------------------------------------


async def serve(settings: Settings, args: argparse.Namespace) -> int:
    """Run everything until a signal: the first stops gracefully, a second stops now."""
    _ensure_data_dir(settings)
    with actors.unwrap_sole_exception():  # a startup error (a locked file) is one clear line
        return await _serve(settings, args)


async def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.app import open_app

    async with trio.open_nursery() as nursery:
        demo = args.demo or (args.demo_unless_configured and not settings.reddit_client_id)
        if demo:
            settings = await _start_demo_sandbox(nursery, settings)
        serve_api = settings.role.value != "worker"
        async with open_app(settings, serve_api=serve_api) as app:
            async with trio.open_nursery() as services:
                await services.start(app.tree.stop_on_signals)
                if not app.store.name.startswith("postgres"):
                    await services.start(_serve_control_socket, app, settings)
                # Only now, with the server listening, is there a first token worth printing: a
                # start that fails earlier (a port in use) leaves the next start a first start.
                first_start = (await _first_start(app.store, settings, app.tree.api.context.base_url)
                               if serve_api else None)
                await _welcome(app, settings, first_start, demo=demo)
                await app.tree.wait_stopped()
                services.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
    return EXIT_OK


async def _serve_control_socket(app, settings: Settings, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Let the CLI run its commands in this process while it holds the SQLite file."""
    from thotto.control import serve_control, socket_path

    async def run(request) -> int:
        return await run_for_cli(settings, request)

    await serve_control(socket_path(settings.data_dir), run, app, task_status=task_status)


async def run_for_cli(settings: Settings, request) -> int:
    """Run a command line the CLI sent over the control socket, as the CLI would have run it
    (it has already parsed it: it cannot fail to parse here), on this server's settings."""
    from thotto.arguments import build_parser

    args = build_parser().parse_args(request.argv)
    args.password = request.password
    args.file_data = request.file
    command = COMMANDS[(args.command, getattr(args, "subcommand", None))]
    try:
        return await command(settings, args)
    except ThottoError as error:
        say(f"thotto: {error}")
        return EXIT_USER_ERROR


async def _start_demo_sandbox(nursery: trio.Nursery, settings: Settings) -> Settings:
    """Serve the sandbox in this process and point Reddit at it."""
    from thotto.reddit.sandbox import serve_sandbox

    import logging

    logging.getLogger("thotto.reddit.sandbox.http").setLevel(logging.WARNING)
    data_dir = os.path.join(settings.data_dir, "sandbox")
    wanted = settings.demo_sandbox_port
    try:
        port = await nursery.start(serve_sandbox, "127.0.0.1", wanted, data_dir)
    except OSError as error:
        if not wanted:
            raise
        port = await nursery.start(serve_sandbox, "127.0.0.1", 0, data_dir)
        logging.getLogger("thotto.demo").warning(
            "demo: the sandbox's port %d is not free (%s); it listens on %d this time, so the "
            "redditUrl of posts published on %d do not open until it gets that port back "
            "(set demo_sandbox_port, THOTTO_DEMO_SANDBOX_PORT, to a free port)",
            wanted, error.strerror or error, port, wanted)
    # The web-app flow works too when the API's port is known in advance (not 0).
    callback = (f"{settings.public_url or f'http://{settings.api_host}:{settings.api_port}'}/api/accounts/callback"
                if settings.api_port else None)
    return msgspec.structs.replace(settings, reddit_url=f"http://127.0.0.1:{port}",
                                   reddit_client_id=DEMO_CLIENT_ID,
                                   reddit_client_secret=_demo_secret(settings),
                                   reddit_redirect_uri=callback)


def _demo_secret(settings: Settings) -> str:
    """The demo app's secret, kept in the data dir so that restarts agree with the sandbox."""
    import secrets

    path = os.path.join(settings.data_dir, "demo-secret")
    if not os.path.exists(path):
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(secrets.token_urlsafe(16))
    with open(path) as file:
        return file.read().strip()


async def _first_start(store, settings: Settings, base: str) -> tuple[User, str, str] | None:
    """On the very first start (no users yet), make the admin, a token and a set-password
    link under ``base``; else None."""
    if await store.list_users():
        return None
    admin, token = await _init_admin(store, settings, "admin")
    return admin, token, await _password_link(store, settings, admin, base)


async def _password_link(store, settings: Settings, user: User, base: str | None = None) -> str:
    """A new one-time link for ``user`` to set their password (see thotto.usecases.passwords):
    under ``base``, else the running server's address, else the configured one."""
    from thotto.usecases import passwords

    if base is None:
        app = serving_app()
        api = app.tree.api if app is not None and app.tree is not None else None
        base = api.context.base_url if api is not None and api.context.base_url else passwords.base_url(settings)
    return await passwords.issue_password_link(store, settings, user.id, base, now=utcnow())


def _password_link_note(user: User, url: str, settings: Settings) -> str:
    return (f"{user.name} sets a password (and signs in to the app) at this link; it works once, "
            f"for {settings.password_link_hours:g} hours:\n\n    {url}\n")


async def _init_admin(store, settings: Settings, name: str) -> tuple[User, str]:
    """The admin and their first token, on a store no process has served yet (so nothing is
    cached anywhere that minting must evict)."""
    from thotto.usecases import tokens, users
    from thotto.vault import Vault

    Vault.for_settings(settings.data_dir, settings.encryption_key)  # makes the key file now
    admin = await users.add_user(store, NewUser(name=name, tier=ADMIN_TIER, role=Role.ADMIN))
    _, token = await tokens.mint(store, None, admin.id, "init")
    return admin, token


async def _welcome(app, settings: Settings, first_start, *, demo: bool) -> None:
    api = app.tree.api
    where = f"API on {api.context.base_url}" if api else "workers only"
    say(f"thotto {__version__}: serving ({where}; role {settings.role.value}; store {app.store.name}); "
        "Ctrl-C stops")
    if demo:
        await _link_demo_account(app)
        say(f"demo: Reddit is the sandbox at {settings.reddit_url} (u/{DEMO_ACCOUNT}); to post to "
            "reddit.com set THOTTO_REDDIT_CLIENT_ID and THOTTO_REDDIT_CLIENT_SECRET (see README)")
    if first_start and api:
        admin, token, password_url = first_start
        say(first_start_message(api.context.base_url, admin.name, token, demo=demo, password_url=password_url))


async def _link_demo_account(app) -> None:
    from thotto.usecases import accounts

    for user in await app.store.list_users():
        if user.role is Role.ADMIN and not await app.store.list_accounts(user.id):
            await accounts.link_with_password(app.scheduler, user.id, DEMO_ACCOUNT, "demo-password")


def first_start_message(url: str, admin: str, token: str, *, demo: bool, password_url: str = "") -> str:
    where = ("the demo sandbox (r/test exists there)" if demo else
             "Reddit: first link an account (thotto account link --user admin --reddit-username NAME)")
    return f"""
First start: created the admin user {admin!r}. Open this link to set the admin's password and
sign in to the app (it works once, for a day; `thotto user password-link {admin}` makes another):

    {password_url}

For scripts, an API token. It is shown only now; keep it:

    export THOTTO_TOKEN={token}

Schedule a first post one minute from now, to {where}:

    curl -s -X POST {url}/api/scheduled-posts \\
      -H "Authorization: Bearer $THOTTO_TOKEN" -H 'Content-Type: application/json' \\
      -d '{{"subreddit": "test", "title": "My first Thotto post", "text": "Hello!", "scheduledFor": "'$(python3 -c 'import datetime as d; print((d.datetime.now(d.timezone.utc) + d.timedelta(minutes=1)).isoformat(timespec="seconds"))')'"}}'

Then watch it: curl -s {url}/api/scheduled-posts -H "Authorization: Bearer $THOTTO_TOKEN"
API reference: {url}/openapi.json
Lost this token? `thotto token create --user {admin}` makes another (it works while the server runs).
"""


async def init(settings: Settings, args: argparse.Namespace) -> int:
    """Create the data dir, schema, key and an admin with a token; refuses to run twice."""
    async with _store(settings) as store:
        existing = await store.list_users()
        if existing:
            raise ValidationError(f"{settings.data_dir} is already initialised ({len(existing)} users); "
                                  "create a token with `thotto token create --user NAME`")
        admin, token = await _init_admin(store, settings, args.admin)
        link = await _password_link(store, settings, admin)
    say(f"initialised {settings.resolved_database_url()}; the key is in {settings.data_dir}")
    say(_password_link_note(admin, link, settings))
    emit(args, {"admin": admin.name, "id": admin.id, "tier": admin.tier.value, "token": token,
                "password_link": link})
    return EXIT_OK


async def migrate(settings: Settings, args: argparse.Namespace) -> int:
    """Opening a store creates or upgrades its schema."""
    async with _store(settings) as store:
        say(f"thotto: {store.name} schema is up to date")
    return EXIT_OK


async def status(settings: Settings, args: argparse.Namespace) -> int:
    """Queue counts and cron jobs from the store; breakers from the running server if it answers."""
    async with _app(settings) as app:
        counts = await app.store.counts()
        crons = await app.engine.cron_statuses()
    report = {
        "queues": [{"queue": c.queue, "state": c.state.value, "count": c.count} for c in counts],
        "crons": [{"name": c.name, "schedule": c.schedule, "next_run_at": c.next_run_at,
                   "last_run_at": c.last_run_at, "last_error": c.last_error, "runs": c.runs} for c in crons],
        "breakers": _breakers_here() if serving_app() is not None else await _server_breakers(settings),
    }
    if args.json:
        emit(args, report)
        return EXIT_OK
    print_table(report["queues"], ["queue", "state", "count"])
    out()
    print_table(msgspec.to_builtins(report["crons"]), ["name", "schedule", "next_run_at", "last_run_at", "last_error"])
    out()
    breakers = report["breakers"]
    if isinstance(breakers, str):
        out(f"breakers: {breakers}")
    else:
        print_table(breakers, ["name", "state"])
    return EXIT_OK


def _breakers_here() -> list[dict]:
    """The running server's breakers (this command runs in it, over the control socket)."""
    snapshots = serving_app().services.breakers.snapshot().values()
    return [{"name": b.name, "state": b.state} for b in snapshots]


async def _server_breakers(settings: Settings) -> list[dict] | str:
    """Breakers live in the serving process: ask its API (needs THOTTO_TOKEN, an admin's)."""
    import httpx

    token = os.environ.get("THOTTO_TOKEN")
    if not token:
        return "set THOTTO_TOKEN (an admin token) to read them from the running server"
    url = (settings.public_url or f"http://{settings.api_host}:{settings.api_port}") + "/api/monitoring/breakers"
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(url, headers={"authorization": f"Bearer {token}"})
    except httpx.HTTPError as error:
        return f"the server at {url} does not answer ({type(error).__name__})"
    if response.status_code != 200:
        return f"the server answered {response.status_code}: {response.text[:200]}"
    body = response.json()
    return body if isinstance(body, list) else body.get("breakers", [])


# --- users, tokens, accounts ------------------------------------------------------------------------


async def user_add(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.engine.jobs import validated
    from thotto.usecases import users

    new_user = validated(NewUser(name=args.name, tier=Tier(args.tier), role=Role(args.user_role)))
    async with _store(settings) as store:
        user = await users.add_user(store, new_user)
        link = await _password_link(store, settings, user)
    if args.json:
        emit(args, {**_user_row(user), "password_link": link})
    else:
        out(f"user {user.name} (id {user.id}, tier {user.tier.value}, role {user.role.value}) created")
        say(_password_link_note(user, link, settings))
    return EXIT_OK


async def user_password_link(settings: Settings, args: argparse.Namespace) -> int:
    """A new one-time set-password link for a user (their earlier unused links stop working)."""
    async with _store(settings) as store:
        user = await store.get_user_by_name(args.name)
        link = await _password_link(store, settings, user)
    if args.json:
        emit(args, {"user": user.name, "password_link": link})
    else:
        out(link)
        say(_password_link_note(user, link, settings))
    return EXIT_OK


def _user_row(user: User) -> dict:
    return {"id": user.id, "name": user.name, "tier": user.tier.value, "role": user.role.value,
            "created_at": user.created_at.isoformat()}


async def user_list(settings: Settings, args: argparse.Namespace) -> int:
    async with _store(settings) as store:
        everyone = await store.list_users()
    emit(args, [_user_row(user) for user in everyone], ["id", "name", "tier", "role", "created_at"])
    return EXIT_OK


async def user_set_tier(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.usecases import users

    async with _admin(settings) as (store, cache):
        user = await store.get_user_by_name(args.name)
        user = await users.change_tier(store, cache, user.id, Tier(args.tier))
    emit(args, _user_row(user))
    return EXIT_OK


async def user_remove(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.usecases import users

    async with _admin(settings) as (store, cache):
        user = await store.get_user_by_name(args.name)
        removal = await users.remove_user(store, cache, user.id)
    if args.json:
        emit(args, {"id": user.id, "name": user.name, "posts_cancelled": removal.posts_cancelled,
                    "tokens_revoked": removal.tokens_revoked,
                    "accounts_unlinked": removal.accounts_unlinked})
    else:
        print(f"user {user.name} (id {user.id}) removed: {removal.tokens_revoked} tokens revoked, "
              f"{removal.posts_cancelled} scheduled posts cancelled, {removal.accounts_unlinked} "
              "Reddit accounts unlinked")
    return EXIT_OK


async def token_create(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.usecases import tokens

    async with _admin(settings) as (store, cache):
        user = await store.get_user_by_name(args.user)
        record, token = await tokens.mint(store, cache, user.id, args.name)
    say(f"token {record.id} for {user.name}: shown only now, keep it")
    emit(args, {"id": record.id, "user": user.name, "name": record.name, "token": token})
    return EXIT_OK


async def token_list(settings: Settings, args: argparse.Namespace) -> int:
    async with _store(settings) as store:
        user = await store.get_user_by_name(args.user)
        tokens = await store.list_tokens(user.id)
    rows = [{"id": t.id, "name": t.name, "created_at": t.created_at.isoformat(),
             "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None} for t in tokens]
    emit(args, rows, ["id", "name", "created_at", "revoked_at"])
    return EXIT_OK


async def token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.usecases import tokens

    async with _admin(settings) as (store, cache):
        token = await tokens.revoke(store, cache, args.id)
    emit(args, {"id": token.id, "name": token.name, "revoked_at": token.revoked_at.isoformat()})
    return EXIT_OK


async def account_link(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.usecases import accounts

    async with _app(settings) as app:
        user = await app.store.get_user_by_name(args.user)
        account = await accounts.link_with_password(app.scheduler, user.id, args.reddit_username, args.password)
    if args.json:
        emit(args, {"id": account.id, "user": user.name, "reddit_username": account.reddit_username})
    else:
        out(f"u/{account.reddit_username} linked to {user.name} (account id {account.id}); "
              "its password is stored encrypted")
    return EXIT_OK


async def account_list(settings: Settings, args: argparse.Namespace) -> int:
    async with _store(settings) as store:
        user = await store.get_user_by_name(args.user)
        accounts = await store.list_accounts(user.id)
    rows = [{"id": a.id, "reddit_username": a.reddit_username, "needs_relink": a.needs_relink,
             "created_at": a.created_at.isoformat()} for a in accounts]
    emit(args, rows, ["id", "reddit_username", "needs_relink", "created_at"])
    return EXIT_OK


# --- posts ---------------------------------------------------------------------------------------

POST_COLUMNS = ["id", "status", "subreddit", "title", "scheduledFor", "redditUrl", "error"]


async def post_schedule(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.usecases import posts
    from thotto.usecases.posts import post_view

    requests = _requests_from_file(args.file_data) if args.file_data else None
    async with _app(settings) as app:
        user = await app.store.get_user_by_name(args.user)
        if requests is None:
            _request_from_args(args)  # refuse a mistake in the flags before uploading anything
            media_ids = await _uploaded_images(app, settings, user, args)
            requests = [_request_from_args(args, media_ids)]
        created = []
        for start in range(0, len(requests), 100):  # batches of 100, each all or nothing
            batch = requests[start:start + 100]
            created += await posts.schedule(app.scheduler, user, batch, batch=len(requests) > 1)
            if len(requests) > 100:
                say(f"scheduled {len(created)} of {len(requests)} posts")
    emit(args, [post_view(post) for post in created], POST_COLUMNS)
    return EXIT_OK


def _request_from_args(args: argparse.Namespace, media_ids: list | None = None) -> ScheduleRequest:
    missing = [flag for flag, value in (("--subreddit", args.subreddit), ("--title", args.title),
                                        ("--at", args.scheduled_for)) if not value]
    if missing:
        raise ValidationError(f"post schedule needs {', '.join(missing)} (or --file)")
    images = args.image or []
    kind = "gallery" if len(images) > 1 else "image" if images else "link" if args.url else "self"
    subreddits = args.subreddit
    fields = {"title": args.title, "scheduledFor": _when(args.scheduled_for, args).isoformat(), "kind": kind,
              "text": args.text, "url": args.url, "mediaIds": media_ids,
              "nsfw": args.nsfw, "spoiler": args.spoiler, "account": args.account,
              "flairId": args.flair_id, "flairText": args.flair_text, "recurrence": _recurrence(args),
              **({"subreddit": subreddits[0]} if len(subreddits) == 1 else {"subreddits": subreddits})}
    return _decoded(fields, ScheduleRequest)


async def _uploaded_images(app, settings: Settings, user, args: argparse.Namespace) -> list | None:
    """Upload ``--image`` files to the user's media library (the same upload code as POST
    /api/media: checked by their bytes, location and camera data removed) and return what
    ``mediaIds`` takes, with the gallery's captions."""
    from pathlib import Path

    from thotto.scheduler.media import file_chunks, upload_media

    images, captions = args.image or [], args.caption or []
    if len(captions) > len(images) or (captions and len(images) < 2):
        raise ValidationError("--caption goes with a gallery: at most one per --image, in their order")
    ids = []
    for index, name in enumerate(images):
        path = Path(name)
        _check_readable(path)
        media = await upload_media(app.store, settings, user.id, file_chunks(path))
        say(f"uploaded {path.name} as media {media.id}; removed: {', '.join(media.removed) or 'nothing'}")
        caption = captions[index] if index < len(captions) else None
        ids.append({"id": media.id, "caption": caption} if caption else media.id)
    return ids or None


def _recurrence(args: argparse.Namespace) -> dict | None:
    if not args.repeat:
        if args.until or args.count:
            raise ValidationError("--until and --count go with --repeat daily|weekly|monthly")
        return None
    recurrence = {"frequency": args.repeat, "interval": args.every, "timezone": _zone_name(args)}
    if args.until:
        recurrence["until"] = _when(args.until, args, flag="--until").isoformat()
    if args.count:
        recurrence["count"] = args.count
    return recurrence


def _zone_name(args: argparse.Namespace) -> str:
    """The IANA name of ``--tz`` (a recurrence keeps its local time across DST there), else UTC
    when this machine's zone has no IANA name."""
    zone = _zone(args)
    return getattr(zone, "key", None) or "UTC"


def _decoded(fields: dict, type_: Any) -> Any:
    """A request body built from flags, validated exactly as the API validates its JSON."""
    from thotto.api.endpoints import decode_body

    given = {k: v for k, v in fields.items() if v is not None}
    _check_utf8(given)
    return decode_body(msgspec.json.encode(given), type_)


def _check_utf8(fields: dict) -> None:
    """Arguments that are not UTF-8 reach Python as lone surrogates, which no JSON (nor Reddit)
    takes: say which one rather than fail encoding it."""
    for name, value in fields.items():
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(text, str) and not text.isascii() and _has_surrogate(text) for text in texts):
            raise ValidationError(f"the {name} given is not UTF-8 text; check the terminal's encoding",
                                  field=name)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _requests_from_file(data: bytes) -> list[ScheduleRequest]:
    """The posts of ``--file`` (read by the CLI, which may be another process than this one)."""
    from thotto.api.endpoints import decode_body

    return decode_body(data, list[ScheduleRequest])


RELATIVE = re.compile(r"^([+-])(\d+(?:\.\d+)?)([smhd])$")


def _when(text: str, args: argparse.Namespace, *, flag: str = "--at") -> datetime:
    """+N / -N s/m/h/d from now, or ISO 8601 (in ``--tz`` when it has no offset)."""
    relative = RELATIVE.match(text.strip())
    if relative:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[relative[3]]
        sign = -1 if relative[1] == "-" else 1
        return utcnow() + sign * timedelta(**{unit: float(relative[2])})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"{flag} {text!r} is neither a date and time (2026-12-01T09:00) nor +10m "
                              "(or -2d)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=_zone(args))


async def post_list(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.scheduler.records import PostStatus
    from thotto.usecases import posts
    from thotto.usecases.posts import post_view

    async with _app(settings) as app:
        user = await app.store.get_user_by_name(args.user)
        status = PostStatus(args.status) if args.status else None
        page = await posts.list_page(app.scheduler, user, status=status, limit=args.limit)
    emit(args, [post_view(post) for post in page.posts], POST_COLUMNS)
    return EXIT_OK


async def post_show(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.usecases import posts

    async with _app(settings) as app:
        user = await app.store.get_user_by_name(args.user)
        detail = await posts.detail(app.scheduler, user, args.id)
    emit(args, detail)
    return EXIT_OK


async def post_edit(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.scheduler.records import PostChange
    from thotto.usecases import posts
    from thotto.usecases.posts import post_view

    fields = {"title": args.title, "text": args.text, "url": args.url, "nsfw": args.nsfw,
              "spoiler": args.spoiler, "flairId": args.flair_id, "flairText": args.flair_text,
              "scheduledFor": args.scheduled_for and _when(args.scheduled_for, args).isoformat()}
    if all(value is None for value in fields.values()):
        raise ValidationError("post edit needs something to change: --title, --text, --url, --at, "
                              "--flair-id, --flair-text, --[no-]nsfw or --[no-]spoiler")
    change = _decoded(fields, PostChange)
    async with _app(settings) as app:
        user = await app.store.get_user_by_name(args.user)
        post = await posts.edit(app.scheduler, user, args.id, change)
    emit(args, post_view(post))
    return EXIT_OK


async def post_cancel(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.usecases import posts
    from thotto.usecases.posts import post_view

    async with _app(settings) as app:
        user = await app.store.get_user_by_name(args.user)
        post = await posts.cancel(app.scheduler, user, args.id)
    emit(args, post_view(post))
    return EXIT_OK


# --- media ------------------------------------------------------------------------------------------


async def media_upload(settings: Settings, args: argparse.Namespace) -> int:
    """Upload an image through the same use case as POST /api/media (thotto.scheduler.media)."""
    from pathlib import Path

    from thotto.api.media import media_view
    from thotto.scheduler.media import file_chunks, upload_media

    path = Path(args.path)
    _check_readable(path)
    async with _store(settings) as store:
        user = await store.get_user_by_name(args.user)
        media = await upload_media(store, settings, user.id, file_chunks(path),
                                   keep_metadata=args.keep_metadata)
    if args.json:
        emit(args, media_view(media))
    else:
        removed = ", ".join(media.removed) or "nothing"
        out(f"media {media.id} ({media.kind.value}, {media.width}×{media.height}, {media.bytes:,} bytes) "
            f"stored for {user.name}; removed: {removed}")
    return EXIT_OK


def _check_readable(path) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise ValidationError(f"cannot read {path}: {error.strerror}") from None


# --- jobs and queues (the operators' commands: thotto.usecases.operations, as the API) ------------------------

JOB_COLUMNS = ["id", "queue", "kind", "state", "attempt", "runAt", "failureCause", "lastError"]


def _search_from_args(args: argparse.Namespace, *, state: str | None = None):
    from thotto.engine.jobs import JobState
    from thotto.engine.store.base import JobSearch

    chosen = state or getattr(args, "state", None)
    return JobSearch(queue=args.queue, kind=args.kind, state=JobState(chosen) if chosen else None,
                     run_from=_when(args.run_from, args, flag="--from") if args.run_from else None,
                     run_to=_when(args.run_to, args, flag="--to") if args.run_to else None,
                     cursor=getattr(args, "cursor", None), limit=getattr(args, "limit", 50))


async def jobs_list(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.usecases import operations

    async with _app(settings) as app:
        found = await operations.search(app.scheduler, _search_from_args(args))
    if args.json:
        emit(args, found)
        return EXIT_OK
    emit(args, found.jobs, JOB_COLUMNS)
    if found.next_cursor:
        say(f"more: --cursor {found.next_cursor}")
    return EXIT_OK


async def jobs_show(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.usecases import operations

    async with _app(settings) as app:
        detail = await operations.job_detail(app.scheduler, args.id)
    if args.json:
        emit(args, detail)
        return EXIT_OK
    emit(args, detail.job)
    out(f"payload     {msgspec.json.encode(detail.payload).decode()}")
    if detail.post is not None:
        post = detail.post
        out(f"post        {post.id} ({post.status.value}) by {post.user} as u/{post.account} "
            f"to r/{post.subreddit}: {post.title}")
    verdict = detail.retry
    out(f"retry       {'yes' if verdict.retryable else 'no'} ({verdict.action}): {verdict.reason}")
    out()
    emit(args, detail.attempts, ["attempt", "startedAt", "finishedAt", "outcome", "error"])
    return EXIT_OK


async def jobs_retry(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.usecases import operations

    async with _app(settings) as app:
        job = await operations.retry_job(app.scheduler, args.id)
    emit(args, job)
    return EXIT_OK


async def jobs_cancel(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.usecases import operations

    async with _app(settings) as app:
        job = await operations.cancel_job(app.scheduler, args.id)
    emit(args, job)
    return EXIT_OK


async def jobs_redrive(settings: Settings, args: argparse.Namespace) -> int:
    """Redrive the dead jobs named, or with --all every dead job matching the filters."""
    from thotto.usecases import operations

    filtered = any((args.queue, args.kind, args.run_from, args.run_to))
    if args.ids and (args.all or filtered):
        raise ValidationError("give job ids, or --all with filters (--queue, --kind, --from, --to), not both")
    if not args.ids and not args.all:
        raise ValidationError("name the dead jobs to redrive (thotto jobs redrive 12 13), or "
                              "--all to redrive every dead job that can succeed again")
    async with _app(settings) as app:
        if args.ids:
            result = await operations.redrive(app.scheduler, job_ids=args.ids)
        else:
            result = await operations.redrive(app.scheduler, query=_search_from_args(args, state="dead"))
    if args.json:
        emit(args, result)
        return EXIT_OK
    out(f"redriven: {', '.join(map(str, result.redriven)) or 'none'}")
    for skipped in result.skipped:
        out(f"skipped {skipped.job_id}: {skipped.reason}")
    return EXIT_OK


async def queue_list(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.usecases import operations

    async with _app(settings) as app:
        found = await operations.queues(app.scheduler)
    if args.json:
        emit(args, found)
        return EXIT_OK
    rows = [{"queue": q.queue, "paused": "paused" if q.paused else "-", "pausedAt": q.paused_at,
             **{state: q.counts.get(state, 0) for state in ("pending", "processing", "dead")}}
            for q in found.queues]
    print_table(msgspec.to_builtins(rows), ["queue", "paused", "pausedAt", "pending", "processing", "dead"])
    return EXIT_OK


async def queue_pause(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.usecases import operations

    async with _app(settings) as app:
        state = await operations.pause(app.scheduler, args.queue)
    if not args.json:
        say(f"queue {state.queue} paused: no process claims its jobs until `thotto queue resume "
            f"{state.queue}`")
    emit(args, state)
    return EXIT_OK


async def queue_resume(settings: Settings, args: argparse.Namespace) -> int:
    from thotto.usecases import operations

    async with _app(settings) as app:
        state = await operations.resume(app.scheduler, args.queue)
    emit(args, state)
    return EXIT_OK


# --- commands without settings ------------------------------------------------------------------------


async def openapi(args: argparse.Namespace) -> int:
    from thotto.api.openapi import encoded_document, markdown
    from thotto.api.routes import all_endpoints

    endpoints = all_endpoints()
    out(markdown(endpoints) if args.markdown
        else msgspec.json.format(encoded_document(endpoints), indent=2).decode())
    return EXIT_OK


async def settings(args: argparse.Namespace) -> int:
    from thotto.config import reference_table

    out(reference_table())
    return EXIT_OK


async def sandbox(args: argparse.Namespace) -> int:
    """Serve the Reddit sandbox (thotto/reddit/sandbox.py); a signal stops it gracefully."""
    import signal
    from functools import partial

    from thotto.reddit.sandbox import SandboxConfig, serve_sandbox

    config = SandboxConfig(token_lifetime=args.token_lifetime, rate_budget=args.rate_budget)
    with actors.unwrap_sole_exception(), trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            try:
                port = await nursery.start(partial(serve_sandbox, args.host, args.port, args.data_dir,
                                                   config=config))
            except OSError as error:
                raise ValidationError(f"cannot serve the sandbox on {args.host}:{args.port}: {error}") from None
            say(f"thotto sandbox: listening on http://{args.host}:{port} (data in {args.data_dir}); Ctrl-C stops")
            async for _ in signals:
                nursery.cancel_scope.cancel()
    return EXIT_OK


COMMANDS = {
    ("serve", None): serve,
    ("init", None): init,
    ("migrate", None): migrate,
    ("status", None): status,
    ("user", "add"): user_add,
    ("user", "list"): user_list,
    ("user", "set-tier"): user_set_tier,
    ("user", "remove"): user_remove,
    ("user", "password-link"): user_password_link,
    ("token", "create"): token_create,
    ("token", "list"): token_list,
    ("token", "revoke"): token_revoke,
    ("account", "link"): account_link,
    ("account", "list"): account_list,
    ("post", "schedule"): post_schedule,
    ("post", "list"): post_list,
    ("post", "show"): post_show,
    ("post", "edit"): post_edit,
    ("post", "cancel"): post_cancel,
    ("media", "upload"): media_upload,
    ("jobs", "list"): jobs_list,
    ("jobs", "show"): jobs_show,
    ("jobs", "retry"): jobs_retry,
    ("jobs", "cancel"): jobs_cancel,
    ("jobs", "redrive"): jobs_redrive,
    ("queue", "list"): queue_list,
    ("queue", "pause"): queue_pause,
    ("queue", "resume"): queue_resume,
}
