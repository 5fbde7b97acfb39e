"""The control socket: how the ``thotto`` command works while a server holds the SQLite file.

SQLite lets one process own the database (the store takes a lock), so while ``thotto serve``
runs, a CLI command cannot open it. Instead the server listens on a Unix socket in its data
directory (``control.sock``, mode 0600 in a 0700 directory, and it checks the peer's user id), and
the CLI sends its command line there. The server runs the *same command function* on its own
running app, with the CLI's arguments and the server's settings, and sends back the exit code
and what the command printed. So a command gives the same answer whether the server runs or not,
by the same code, and sees what only the server knows (its breakers, its Reddit sandbox).

With Postgres every process opens the database itself, so there is no control socket.

One request per connection: a 4-byte big-endian length, then a msgspec JSON
:class:`ControlRequest`; the reply is framed the same way.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import os
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import msgspec
import trio

log = logging.getLogger("thotto.control")

SOCKET_NAME = "control.sock"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a post schedule --file of thousands of posts fits
REPLY_TIMEOUT_SECONDS = 600.0


class ControlRequest(msgspec.Struct, kw_only=True):
    """A command line to run in the server, with what the CLI read locally."""

    argv: list[str]
    password: str | None = None
    """``account link`` asks for the password on the CLI's terminal, never over the socket's peer."""
    file: bytes | None = None
    """The contents of ``post schedule --file``, read by the CLI (the server may not see that path)."""


class ControlReply(msgspec.Struct, kw_only=True):
    exit_code: int
    stdout: str
    stderr: str


# --- what a command writes to, and what it runs on -------------------------------------------------


@dataclass
class Console:
    """Where a command prints: the terminal, or buffers sent back over the control socket."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)


_console: contextvars.ContextVar[Console | None] = contextvars.ContextVar("thotto_console", default=None)
_serving: contextvars.ContextVar[Any] = contextvars.ContextVar("thotto_serving_app", default=None)


def console() -> Console:
    """The console of the command running in this task (the terminal unless a server runs it)."""
    return _console.get() or Console()


def serving_app() -> Any:
    """The running app when a server runs this command for the CLI, else None."""
    return _serving.get()


def socket_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / SOCKET_NAME


# --- the server side ----------------------------------------------------------------------------------

Runner = Callable[[ControlRequest], Awaitable[int]]


async def serve_control(path: Path, run: Runner, app: Any, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve the control socket at ``path`` until cancelled; ``run`` runs one request's command
    (with :func:`console` and :func:`serving_app` set for it) and returns its exit code. The
    socket file is removed on the way out."""
    listener = _listen(path)
    try:
        task_status.started()
        async with trio.open_nursery() as nursery:
            while True:
                connection, _ = await listener.accept()
                nursery.start_soon(_answer, connection, run, app)
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _listen(path: Path) -> trio.socket.SocketType:
    """A listening Unix socket that only this OS user may connect to (mode 0600)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a server that was killed: this process holds the store's lock now
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(os.fspath(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(16)
    return trio.socket.from_stdlib_socket(sock)


async def _answer(connection: trio.socket.SocketType, run: Runner, app: Any) -> None:
    with connection:
        stream = trio.SocketStream(connection)
        if not _same_user(connection):
            log.warning("control socket: refused a connection from another OS user")
            return
        try:
            request = msgspec.json.decode(await _receive(stream), type=ControlRequest)
        except (msgspec.DecodeError, EOFError, trio.BrokenResourceError) as error:
            log.warning("control socket: bad request (%s)", error)
            return
        reply = await _run_captured(request, run, app)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await _send(stream, msgspec.json.encode(reply))


def _same_user(connection: trio.socket.SocketType) -> bool:
    """The peer runs as this process's user (or root). The file's mode already says so; this
    holds even if someone loosens the mode of the directory or the socket."""
    peer_cred = getattr(socket, "SO_PEERCRED", None)
    if peer_cred is None:  # not Linux: the socket's mode is the guard
        return True
    _pid, uid, _gid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, peer_cred, 12))
    return uid in (os.getuid(), 0)


async def _run_captured(request: ControlRequest, run: Runner, app: Any) -> ControlReply:
    out, err = io.StringIO(), io.StringIO()
    console_token = _console.set(Console(out, err))
    serving_token = _serving.set(app)
    try:
        exit_code = await run(request)
    except Exception:  # a bug in a command must not take the server down; the CLI says so
        log.exception("control socket: command %s failed", request.argv[:2])
        err.write("thotto: the server failed to run the command; its log has the details\n")
        exit_code = 1
    finally:
        _serving.reset(serving_token)
        _console.reset(console_token)
    return ControlReply(exit_code=exit_code, stdout=out.getvalue(), stderr=err.getvalue())


# --- the CLI side ----------------------------------------------------------------------------------------


def run_remotely(path: Path, request: ControlRequest) -> ControlReply | None:
    """Send ``request`` to the server listening at ``path``; None when no server listens there
    (no socket file, or one left by a server that is gone)."""
    if not path.exists():
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(os.fspath(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        sock.settimeout(REPLY_TIMEOUT_SECONDS)
        payload = msgspec.json.encode(request)
        sock.sendall(struct.pack(">I", len(payload)) + payload)
        size = struct.unpack(">I", _read_exactly(sock, 4))[0]
        return msgspec.json.decode(_read_exactly(sock, size), type=ControlReply)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("the server closed the control socket before answering")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- framing on the server side ------------------------------------------------------------------------


async def _receive(stream: trio.SocketStream) -> bytes:
    (size,) = struct.unpack(">I", await _receive_exactly(stream, 4))
    if size > MAX_MESSAGE_BYTES:
        raise EOFError(f"a request of {size} bytes is over the limit")
    return await _receive_exactly(stream, size)


async def _receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            raise EOFError("the client closed the control socket mid-request")
        data += chunk
    return bytes(data)


async def _send(stream: trio.SocketStream, payload: bytes) -> None:
    await stream.send_all(struct.pack(">I", len(payload)) + payload)
