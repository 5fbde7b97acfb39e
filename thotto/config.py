"""Settings: one validated ``msgspec.Struct`` read from ``THOTTO_*`` variables and a TOML file.

Precedence, lowest to highest: defaults, the TOML file (``THOTTO_CONFIG`` or ``--config``),
environment variables ``THOTTO_<FIELD>``, then explicit overrides (CLI flags, embedders). A bad
value stops startup with a :class:`~thotto.errors.ConfigError` naming the setting and what is
allowed.
"""

from __future__ import annotations

import enum
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Mapping

import msgspec

from thotto.engine.config import EngineSettings, ProcessRole
from thotto.engine.errors import ConfigError

ENV_PREFIX = "THOTTO_"


class LogFormat(enum.Enum):
    TEXT = "text"
    JSON = "json"


class Settings(EngineSettings, kw_only=True, forbid_unknown_fields=True):
    """Every setting Thotto reads: the engine's (:class:`EngineSettings`) and the product's.
    Field docs become the reference table in the docs."""

    log_level: Annotated[str, msgspec.Meta(pattern=r"^(DEBUG|INFO|WARNING|ERROR)\Z")] = "INFO"
    """DEBUG, INFO, WARNING or ERROR."""

    log_format: LogFormat = LogFormat.TEXT
    """text | json (JSON lines)."""

    media_max_bytes: Annotated[int, msgspec.Meta(ge=1024, le=100_000_000)] = 20_000_000
    """Largest image a user may upload (413 beyond it): Reddit's own limit for images, 20 MB.
    Reddit takes animated GIFs up to 100 MB; raise this (up to 100,000,000) to allow them."""

    media_max_pixels: Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)] = 50_000_000
    """Most pixels (width × height, of the largest frame) an uploaded image may declare: larger
    is refused (422) before anything decodes it, as a decompression bomb. Checking an image
    decodes it once, holding up to about 4 bytes per pixel for a moment (two at a time)."""

    media_retention_days: Annotated[float, msgspec.Meta(ge=0.01, le=36500)] = 30.0
    """Uploaded media that no post uses are deleted this many days after their upload (daily)."""

    reddit_url: str | None = None
    """Point both the token and the API host at this base URL, e.g. a sandbox started with
    ``thotto sandbox`` (``http://127.0.0.1:8765``); overrides the two settings below."""

    demo_sandbox_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8765
    """Port of the Reddit sandbox that demo mode (``serve --demo``, ``run.py`` without a Reddit
    app) runs in-process: kept across restarts so that published posts' ``redditUrl`` still
    open. When it is taken a free port is used and the log says so; 0: always a free port."""

    reddit_token_url: str = "https://www.reddit.com"
    """Where Reddit's authorize page and token endpoint live."""

    reddit_api_url: str = "https://oauth.reddit.com"
    """Where Reddit's OAuth API lives."""

    reddit_client_id: str | None = None
    """The id of the Reddit app (reddit.com/prefs/apps): a web app, or a script app for one person."""

    reddit_client_secret: str | None = None
    """The Reddit app's secret."""

    reddit_redirect_uri: str | None = None
    """The web app's registered redirect URI (where Reddit sends users back after consenting)."""

    reddit_scopes: str = "identity submit read history flair"
    """OAuth scopes asked for, separated by spaces."""

    reddit_user_agent_platform: Annotated[str, msgspec.Meta(pattern=r"^[^:\s]+\Z")] = "python"
    """First part of the User-Agent Reddit requires: <platform>:<app id>:<version> (by /u/<username>)."""

    reddit_user_agent_app_id: Annotated[str, msgspec.Meta(pattern=r"^[^:\s]+\Z")] = "thotto"
    """The app id part of the User-Agent."""

    reddit_user_agent_username: str | None = None
    """The Reddit username responsible for this installation, named in the User-Agent."""

    reddit_requests_per_minute: Annotated[float, msgspec.Meta(gt=0, le=1_000_000)] = 100.0
    """Requests per minute per Reddit app (Reddit counts per OAuth client id); requests are
    spaced evenly. Reddit's free tier allows 100; raise it only with an agreement for more."""

    reddit_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = 30.0
    """How long one request to Reddit may take."""

    reddit_media_confirm_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = 30.0
    """How long to wait for Reddit to announce (over its websocket) that an image post's
    processing has ended; after that the post is looked for in the account's listing, and
    looked for again later if it is not there yet."""

    encryption_key: str | None = None
    """Fernet key for stored Reddit credentials; default: <data_dir>/secret.key, made on first start."""

    redis_url: str | None = None
    """``redis://host:port/db`` for the shared cache (L2), cross-process cache invalidation and
    shared breaker state; none: each process caches in memory and decides alone."""

    redis_namespace: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+\Z")] = "thotto"
    """Prefix of Thotto's Redis keys and channels (processes of one installation share it)."""

    cache_max_entries: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] = 10_000
    """Most entries the in-memory cache holds (least recently used go first)."""

    cache_max_mb: Annotated[float, msgspec.Meta(ge=0, le=1_000_000)] = 64.0
    """About how much memory the in-memory cache may use, in MiB (0: no limit)."""

    cache_default_ttl_seconds: Annotated[float, msgspec.Meta(gt=0, le=31_536_000)] = 300.0
    """How long a cached value lives when the caller names no TTL or TTL class."""

    cache_ttl_user_metrics_seconds: Annotated[float, msgspec.Meta(gt=0, le=31_536_000)] = 3600.0
    """TTL class ``user_metrics`` (optimal times, analytics)."""

    cache_ttl_community_seconds: Annotated[float, msgspec.Meta(gt=0, le=31_536_000)] = 21600.0
    """TTL class ``community`` (subreddit rules and data)."""

    cache_ttl_post_list_seconds: Annotated[float, msgspec.Meta(gt=0, le=31_536_000)] = 300.0
    """TTL class ``post_list``."""

    cache_ttl_jitter: Annotated[float, msgspec.Meta(ge=0, lt=1)] = 0.1
    """Each cached value's TTL is shortened by a random share below this, so values cached
    together do not all expire together."""

    reddit_reconcile_settle_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 60.0
    """After an attempt whose outcome is unknown, how long Reddit's listing gets to show the post
    before Thotto concludes it was not accepted and submits again."""

    api_host: str = "127.0.0.1"
    """Address the HTTP API listens on (``0.0.0.0`` to accept other machines)."""

    api_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000
    """Port of the HTTP API (0 picks a free one, printed at startup)."""

    public_url: str | None = None
    """How users reach this installation, e.g. ``https://thotto.example.com`` (links, OAuth
    redirect); default: ``http://<api_host>:<api_port>``."""

    api_max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=100_000_000)] = 1_000_000
    """Largest request body the API accepts (413 beyond it)."""

    api_requests_per_minute: Annotated[float, msgspec.Meta(gt=0, le=1_000_000)] = 600.0
    """Each user's sustained API request rate; beyond it and the burst, 429 with Retry-After."""

    api_burst: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 60
    """Requests a user may make at once above the sustained rate."""

    api_auth_failures_per_minute: Annotated[float, msgspec.Meta(gt=0, le=1_000_000)] = 10.0
    """Failed authentications (unknown or revoked API tokens) one client address may make a
    minute, sustained; beyond it and the burst, 429 with Retry-After."""

    api_auth_failure_burst: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 20
    """Failed authentications one client address may make at once above the sustained rate."""

    web_session_idle_hours: Annotated[float, msgspec.Meta(gt=0, le=8760)] = 168.0
    """A signed-in browser unused this long is signed out (the web app's sessions)."""

    web_session_max_days: Annotated[float, msgspec.Meta(gt=0, le=366)] = 30.0
    """A web session ends this long after signing in, however much it is used."""

    password_link_hours: Annotated[float, msgspec.Meta(gt=0, le=720)] = 24.0
    """How long a one-time set-password link works (printed by ``thotto user add``, ``thotto
    init`` and the first start, or issued by an admin in the app)."""

    sign_in_failures_per_user: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 5
    """Failed sign-ins one user name may take within ``sign_in_window_minutes`` before further
    attempts are refused (429 with Retry-After), from any address, in every process."""

    sign_in_failures_per_address: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 20
    """Failed sign-ins one client address may make within ``sign_in_window_minutes``."""

    sign_in_window_minutes: Annotated[float, msgspec.Meta(gt=0, le=1440)] = 15.0
    """The window over which failed sign-ins are counted."""

    duplicate_window_hours: Annotated[float, msgspec.Meta(ge=0, le=8760)] = 24.0
    """A post with the same account, subreddit and title as one pending, or published within
    this many hours, is refused as a duplicate (409)."""

    monitor_interval_seconds: Annotated[float, msgspec.Meta(ge=0.1, le=86400)] = 30.0
    """How often the queue monitor takes a snapshot of every queue."""

    monitor_history: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 100
    """Snapshots kept per queue."""

    alert_waiting: Annotated[int, msgspec.Meta(ge=0)] = 1000
    """Alert when more jobs than this wait (are due and unclaimed) in one queue."""

    alert_failed_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.10
    """Alert when more than this share of a queue's finished attempts failed since the last snapshot."""

    alert_stalled: Annotated[int, msgspec.Meta(ge=0)] = 10
    """Alert when more leases than this expired since the last snapshot."""

    alert_redis_latency_ms: Annotated[float, msgspec.Meta(ge=0)] = 100.0
    """Alert when a Redis round trip takes longer than this."""

    alert_webhook_url: str | None = None
    """POST events here as JSON: alerts, published posts, permanently failed posts and accounts
    needing re-linking. Each is a job of the ``webhooks`` queue, retried with backoff until the
    receiver answers 2xx (a restart loses none)."""

    webhook_secret: str | None = None
    """The shared secret that signs every webhook (``X-Thotto-Signature: t=<unix time>,v1=<hex
    HMAC-SHA256 of "<t>.<body>">``); without it webhooks are sent unsigned."""

    webhook_max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 12
    """Tries per webhook before its delivery is given up (failed in the delivery log)."""



def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build Settings from the TOML file, the environment and ``overrides`` (None ignored)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = config_file or environ.get(f"{ENV_PREFIX}CONFIG")
    if config_file:
        values.update(_read_toml(Path(config_file)))
    values.update(_from_environment(environ))
    values.update({key: value for key, value in overrides.items() if value is not None})
    return _convert(values)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist; fix THOTTO_CONFIG or --config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}") from exc


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    fields = set(Settings.__struct_fields__)
    found = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and key != f"{ENV_PREFIX}CONFIG":
            name = key[len(ENV_PREFIX) :].lower()
            if name in fields:
                found[name] = value
    return found


def _convert(values: dict[str, Any]) -> Settings:
    try:
        # strict=False lets "25" and "true" from the environment become numbers and booleans.
        return msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc))) from exc


def _explain(message: str) -> str:
    """Turn msgspec's message into one that names the setting, its variable and what is allowed."""
    if message.startswith("Object contains unknown field"):
        name = message.split("`")[1]
        return f"Unknown setting {name!r}; known settings: {', '.join(Settings.__struct_fields__)}"
    what, _, where = message.rpartition(" - at `$.")
    if not where:
        return f"Invalid settings: {message}"
    name = where.rstrip("`")
    return f"Invalid setting {name} ({ENV_PREFIX}{name.upper()}): {what}{_allowed(name)}"


def _allowed(name: str) -> str:
    """'; allowed: a, b, c' for enum settings, else ''."""
    annotation = {name: annotation for kind in reversed(Settings.__mro__)
                  for name, annotation in vars(kind).get("__annotations__", {}).items()}.get(name)
    kind = {"ProcessRole": ProcessRole, "LogFormat": LogFormat}.get(str(annotation))
    return f"; allowed: {', '.join(member.value for member in kind)}" if kind else ""


def reference_table() -> str:
    """The settings reference (Markdown), generated from :class:`Settings` and its field docs."""
    import ast
    import inspect

    docs = _field_docs(ast, inspect)
    rows = ["| setting | environment variable | default | meaning |", "| --- | --- | --- | --- |"]
    for name, default in zip(Settings.__struct_fields__, _defaults()):
        meaning = " ".join(docs.get(name, "").split()).replace("|", "\\|")
        rows.append(f"| `{name}` | `{ENV_PREFIX}{name.upper()}` | `{default}` | {meaning} |")
    return "\n".join(rows)


def _defaults() -> list[str]:
    defaults = msgspec.to_builtins(Settings())
    return [str(defaults.get(name)) if defaults.get(name) is not None else "none"
            for name in Settings.__struct_fields__]


def _field_docs(ast, inspect) -> dict[str, str]:
    """Each field's docstring: the string literal right after its annotated assignment (in
    :class:`Settings` and the engine's settings it extends)."""
    docs = {}
    for kind in (EngineSettings, Settings):
        body = ast.parse(inspect.getsource(kind)).body[0].body
        for statement, following in zip(body, body[1:]):
            if (isinstance(statement, ast.AnnAssign) and isinstance(following, ast.Expr)
                    and isinstance(following.value, ast.Constant) and isinstance(following.value.value, str)):
                docs[statement.target.id] = following.value.value
    return docs
