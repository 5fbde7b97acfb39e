"""The HTTP API as a Starlette app over the engine and the Reddit scheduler.

Every route is an :class:`Endpoint`: the handler plus what it reads and returns. The Starlette
routes and the OpenAPI document (:mod:`thotto.api.openapi`) are both built from that one table, so
the document cannot drift from the behaviour. Handlers find the :class:`ApiContext` at
``request.app.state.api`` and raise :mod:`thotto.errors` exceptions; :func:`error_response` turns
each into JSON ``{error, detail, field}`` with its status (:data:`ERROR_STATUS`).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import actors
from thotto.cache import Cache
from thotto.config import Settings
from thotto.engine.clock import Clock
from thotto.engine.engine import Engine
from thotto.engine.errors import (
    Conflict,
    ConfigError,
    InvalidTransition,
    JobError,
    NotFound,
    StoreUnavailable,
    ThottoError,
    ValidationError,
)
from thotto.scheduler.records import ErrorBody
from thotto.usecases.posts import BatchInvalid
from thotto.errors import DuplicatePost
from thotto.errors import Forbidden
from thotto.errors import MediaInUse
from thotto.monitor import Monitor
from thotto.errors import OutcomePending
from thotto.errors import PayloadTooLarge
from thotto.scheduler.scheduler import Scheduler
from thotto.services import Services
from thotto.store.base import Store
from thotto.errors import TooManyRequests
from thotto.errors import Unauthorized
from thotto.errors import UnsupportedMedia

if TYPE_CHECKING:
    from thotto.api.auth import FailureLimiter, RequestLimiter

log = logging.getLogger("thotto.api")

T = TypeVar("T")
RouteHandler = Callable[[Request], Awaitable[Response]]


class MalformedBody(ValidationError):
    """The body is not JSON at all."""


# Most specific first: DuplicatePost is a Conflict, PayloadTooLarge a ValidationError.
ERROR_STATUS: list[tuple[type[BaseException], int]] = [
    (Unauthorized, 401),
    (Forbidden, 403),
    (TooManyRequests, 429),
    (PayloadTooLarge, 413),
    (UnsupportedMedia, 415),
    (MalformedBody, 400),
    (NotFound, 404),
    (DuplicatePost, 409),
    (Conflict, 409),
    (InvalidTransition, 409),
    (ValidationError, 422),
    (StoreUnavailable, 503),
    (ConfigError, 503),
    (JobError, 502),  # Reddit refused or failed a call made for the request (e.g. linking)
]

SUMMARY = {400: "Malformed JSON", 401: "Not signed in", 403: "Not allowed", 404: "Not found",
           409: "Conflict", 413: "Body too large", 415: "Unsupported media type",
           422: "Invalid input", 429: "Too many requests", 502: "Reddit call failed",
           503: "Unavailable"}


@dataclass
class ApiContext:
    """What the API's handlers share: the process's services, the engine, the Reddit scheduler
    (which the product's use cases take), the per-user request limiter and the per-address
    failed-authentication limiter (None for callers that are not HTTP clients, e.g. the CLI)."""

    services: Services
    engine: Engine
    scheduler: Scheduler
    limiter: "RequestLimiter | None" = None
    auth_failures: "FailureLimiter | None" = None
    """Failed authentications per client address (None: unlimited, e.g. the CLI)."""
    base_url: str = ""
    """How users reach the API (set once the server is listening)."""
    monitor: Monitor | None = None
    """The queue monitor of the serving process (None for the CLI)."""
    supervisor: actors.Supervisor | None = None
    """The serving process's supervisor, once its tree is built (its actors' health)."""

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def store(self) -> Store:
        return self.services.store

    @property
    def cache(self) -> Cache:
        return self.services.cache

    @property
    def clock(self) -> Clock:
        return self.services.clock


@dataclass(frozen=True)
class Endpoint:
    """One route: ``handler`` serves ``method path``; the rest describes it for OpenAPI."""

    method: str
    path: str
    handler: RouteHandler
    summary: str
    body: Any = None
    response: Any = None
    status: int = 200
    auth: str | None = "user"  # "user", "admin" or None (public)
    query: Any = None
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    content_type: str = "application/json"
    also: tuple[tuple[int, Any, str], ...] = ()
    """Other successful answers: (status, body type, when)."""
    body_content: dict[str, Any] | None = None
    """The OpenAPI ``content`` of a body that is not JSON (an upload), by media type."""
    response_content: dict[str, Any] | None = None
    """The OpenAPI ``content`` of a response that is not JSON (an image), by media type."""

    def route(self) -> Route:
        return Route(self.path, self.handler, methods=[self.method])


@dataclass
class EndpointGroup:
    """The endpoints of one module, in the order they are matched."""

    endpoints: list[Endpoint] = field(default_factory=list)

    def add(self, method: str, path: str, summary: str, **options: Any) -> Callable[[RouteHandler], RouteHandler]:
        def register(handler: RouteHandler) -> RouteHandler:
            self.endpoints.append(Endpoint(method, path, handler, summary, **options))
            return handler

        return register


# --- requests and responses ------------------------------------------------------------------

_ENCODER = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_ENCODER.encode(body), status, headers=headers, media_type="application/json")


# Beyond this a refused body is not read to its end: the answer closes the connection instead.
DRAIN_MAX_BYTES = 8 * 1024 * 1024


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 beyond ``api_max_body_bytes`` (checked on the
    declared length first, then while reading, so a lying client cannot exhaust memory)."""
    limit = request.app.state.api.settings.api_max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max(limit, DRAIN_MAX_BYTES):
        raise PayloadTooLarge(f"The body is {declared} bytes; at most {limit} are accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            # Read the rest (bounded) before answering: a client still sending would otherwise
            # block on a full socket and never see the 413.
            if size > DRAIN_MAX_BYTES:
                break
            continue
        chunks.append(chunk)
    if size > limit:
        raise PayloadTooLarge(f"The body is over {limit} bytes; at most {limit} are accepted")
    return b"".join(chunks)


def decode_body(data: bytes | msgspec.Raw, type: type[T]) -> T:
    """Decode a JSON body into ``type``: 400 if it is not JSON, 422 naming the field if it does
    not fit the type (or nests too deeply to decode, or holds a date-time outside the calendar
    once in UTC)."""
    if isinstance(data, bytes) and not data.strip():
        raise MalformedBody("The request needs a JSON body (Content-Type: application/json)")
    try:
        decoded = msgspec.json.decode(data, type=type)
    except msgspec.ValidationError as error:
        raise ValidationError(_as_documented(str(error)), field=field_of(str(error))) from None
    except msgspec.DecodeError as error:
        raise MalformedBody(f"The body is not valid JSON: {error}") from None
    except RecursionError:
        field = deepest_path(bytes(data))
        raise ValidationError(f"{field or 'The body'} nests arrays or objects too deeply to read; "
                              "no field of this API takes more than a few levels", field=field) from None
    check_datetimes(decoded)
    return decoded


async def read_json(request: Request, type: type[T]) -> T:
    return decode_body(await read_body(request), type)


def read_query(request: Request, type: type[T]) -> T:
    """Query parameters as ``type`` (numbers and dates converted from their text)."""
    try:
        query = msgspec.convert(dict(request.query_params), type, strict=False)
    except msgspec.ValidationError as error:
        raise ValidationError(_as_documented(str(error)).replace("`$.", "`"), field=field_of(str(error))) from None
    check_datetimes(query)
    return query


# Fields the API took once and no longer does, with what to do instead.
REMOVED_FIELDS = {"imagePath": "Thotto reads no file on the server: upload the image with POST /api/media "
                               "and give the id it answers in mediaIds"}


def _as_documented(message: str) -> str:
    """A msgspec message with its patterns spelled as the OpenAPI document spells them (msgspec
    quotes a pattern as its repr, so ``\\Z`` shows with its backslash doubled), and what to do
    instead of a field that is no longer taken."""
    message = re.sub(r"\\{1,2}Z' - at", "$' - at", message)
    removed = re.search(r"unknown field `(\w+)`", message)
    if removed and removed[1] in REMOVED_FIELDS:
        message = f"{message}: {REMOVED_FIELDS[removed[1]]}"
    return message


def check_datetimes(value: Any, path: str = "") -> None:
    """Refuse a date-time that has no UTC equivalent (``0001-01-01T00:00:00+01:00`` is in year 0
    in UTC, ``9999-12-31T23:59:59-01:00`` in year 10000): every store and comparison works in
    UTC. Walks structs and lists; ``path`` is the field path as the client spelled it."""
    if isinstance(value, datetime):
        try:
            value.astimezone(timezone.utc)
        except OverflowError:
            raise ValidationError(
                f"{path} {value.isoformat()} is outside the calendar in UTC; give a date-time "
                "between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z", field=path) from None
    elif isinstance(value, msgspec.Struct):
        for name, encoded in _encoded_names(type(value)):
            check_datetimes(getattr(value, name), f"{path}.{encoded}" if path else encoded)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_datetimes(item, f"{path}[{index}]")


@functools.cache
def _encoded_names(struct: type) -> tuple[tuple[str, str], ...]:
    return tuple((field.name, field.encode_name) for field in msgspec.structs.fields(struct))


# Strings (skipped whole, escapes included; an unterminated one runs to the end, so that each
# byte is read once however the body is forged) and the punctuation that gives JSON its shape.
_JSON_SHAPE = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{},:]')


#: Nesting no body of this API needs (its deepest field is 3 levels down); deeper is forged.
TOO_DEEP = 32


def deepest_path(body: bytes, levels: int = 3) -> str | None:
    """Where a JSON document first nests :data:`TOO_DEEP` levels (else where it nests deepest),
    as a field path of at most ``levels`` steps (``posts[3].title``): to name the culprit when a
    body nests too deeply to decode. Reads the body once, stopping there."""
    stack: list[list[Any]] = []  # per open container: [is_array, current index or key]
    deepest, where, last_string = 0, None, b""
    for match in _JSON_SHAPE.finditer(body):
        token = match.group()
        if token.startswith(b'"'):
            last_string = token
        elif token in (b"[", b"{"):
            stack.append([token == b"[", 0 if token == b"[" else None])
            if len(stack) > deepest:
                deepest, where = len(stack), _path_of(stack[: levels + 1])
                if deepest >= TOO_DEEP:
                    break
        elif token in (b"]", b"}"):
            if stack:
                stack.pop()
        elif token == b":" and stack and not stack[-1][0]:
            stack[-1][1] = last_string[1:-1].decode("utf-8", "replace")
        elif token == b"," and stack and stack[-1][0]:
            stack[-1][1] += 1
    return where


def _path_of(stack: list[list[Any]]) -> str | None:
    """The path of the innermost container's slot in ``stack`` (the last entry is the container
    itself, so its own index or key is not part of the path)."""
    path = ""
    for is_array, step in stack[:-1]:
        if is_array:
            path += f"[{step}]"
        elif step is not None:
            path += f".{step}" if path else step
    return path or None


def path_id(request: Request, name: str = "id") -> int:
    value = request.path_params[name]
    if not value.isdigit() or int(value) < 1 or len(value) > 18:
        raise NotFound(f"No such {name}: {value!r}")
    return int(value)


def field_of(message: str) -> str | None:
    """The field path msgspec names at the end of its messages (``- at `$.posts[0].title```)."""
    marker = "at `$."
    start = message.rfind(marker)
    return message[start + len(marker):].rstrip("`") if start != -1 else None


# --- errors ----------------------------------------------------------------------------------


def camel(field: str | None) -> str | None:
    """A field path as the API spells it: ``content.image_path`` -> ``content.imagePath``."""
    return re.sub(r"_([a-z])", lambda match: match.group(1).upper(), field) if field else field


def status_of(error: BaseException) -> int:
    for kind, status in ERROR_STATUS:
        if isinstance(error, kind):
            return status
    return 500


def error_response(error: ThottoError) -> Response:
    status = status_of(error)
    body = ErrorBody(error=SUMMARY.get(status, "Error"), detail=str(error),
                     field=camel(getattr(error, "field", None)))
    headers = {}
    if isinstance(error, Forbidden) and error.required_tier:
        body.error = str(error)
        body.detail = None
        body.required_tier = error.required_tier
    if isinstance(error, DuplicatePost):
        body.existing_post_id = error.existing_post_id
    if isinstance(error, MediaInUse):
        body.post_ids = error.post_ids
    if isinstance(error, BatchInvalid):
        body.errors = [msgspec.structs.replace(item, field=camel(item.field)) for item in error.errors]
    if isinstance(error, TooManyRequests):
        headers["Retry-After"] = _seconds(error.retry_after)
    if isinstance(error, OutcomePending):
        headers["Retry-After"] = _seconds(error.retry_after_seconds)
    if isinstance(error, PayloadTooLarge):
        headers["Connection"] = "close"  # the rest of a body too large may still be arriving
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="thotto"'
    if status == 503:
        headers["Retry-After"] = "5"
    return json_response(body, status, headers)


def _seconds(delay: float) -> str:
    """A Retry-After value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(delay)))


async def _on_thotto_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ThottoError)
    return error_response(error)


async def _on_http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    detail = {404: f"No route {request.url.path}; see /openapi.json",
              405: f"{request.method} is not allowed on {request.url.path}"}.get(error.status_code, error.detail)
    return json_response(ErrorBody(error=SUMMARY.get(error.status_code, "Error"), detail=detail),
                         error.status_code, dict(error.headers or {}))


async def _on_unexpected(request: Request, error: Exception) -> Response:
    incident = uuid.uuid4().hex[:12]
    log.error("unexpected error in %s %s (incident %s)", request.method, request.url.path, incident,
              exc_info=error)
    return json_response(ErrorBody(error="Internal error", detail=f"logged as incident {incident}"), 500)


def error_handlers() -> dict:
    """Starlette's exception handlers: Thotto's errors, HTTP errors, and the unexpected."""
    return {ThottoError: _on_thotto_error, HTTPException: _on_http_error, Exception: _on_unexpected}


# --- timing requests ---------------------------------------------------------------------------


class MetricsMiddleware:
    """ASGI middleware timing HTTP requests into ``thotto_http_request_duration_seconds``.

    The route label is the matched route's path template (``/api/posts/{id}``), so label values
    stay few; unmatched paths count as ``unmatched``. ``metrics`` is a :class:`Metrics` or a
    callable returning the one to use (the app's engine may be attached after construction).
    """

    def __init__(self, app: Any, metrics: Any):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an exception before any response counts as a server error

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, sending)
        finally:
            metrics = self.metrics() if callable(self.metrics) else self.metrics
            if metrics is not None:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                metrics.http_duration.labels(scope.get("method", ""), template, str(status)).observe(
                    time.perf_counter() - started)
