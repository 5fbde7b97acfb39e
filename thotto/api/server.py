"""The API server: hypercorn's Trio worker serving the Starlette app, as an actor of the tree.

It binds before reporting ready (so a port in use fails startup with a clear error), and stops
gracefully: on cancellation it accepts no new connections and lets requests in flight finish
within ``grace_seconds``, then cancels them.
"""

from __future__ import annotations

import logging
import os
import socket

import trio

from thotto.api.endpoints import ApiContext
from thotto.api.routes import build_app
from thotto.engine.errors import ConfigError

log = logging.getLogger("thotto.api.server")


class ApiServer:
    """Serves the API over ``context`` on ``host:port``; ``port`` 0 picks a free one, and
    :attr:`port` / :attr:`url` tell which once ready."""

    def __init__(self, context: ApiContext, host: str, port: int, *, grace_seconds: float = 5.0,
                 extra_routes=()):
        self.context = context
        self.host = host
        self.requested_port = port
        self.port: int | None = None
        self.grace_seconds = grace_seconds
        self.app = build_app(context, extra_routes)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        from hypercorn.config import Config
        from hypercorn.trio import serve

        listener = _bind(self.host, self.requested_port)
        try:
            config = Config()
            config.bind = [f"fd://{os.dup(listener.fileno())}"]
            config.accesslog = None
            config.errorlog = _quiet_logger("thotto.api.http")
            config.graceful_timeout = self.grace_seconds
            config.keep_alive_timeout = 30.0
            stop = trio.Event()
            # Shielded so that cancelling this actor is a graceful stop bounded by a deadline,
            # rather than tearing connections down mid-response.
            server_scope = trio.CancelScope(shield=True)

            async def run_server(*, task_status) -> None:
                with server_scope:
                    await serve(self.app, config, shutdown_trigger=stop.wait, task_status=task_status)

            async with trio.open_nursery() as nursery:
                await nursery.start(run_server)
                self.port = listener.getsockname()[1]
                self.context.base_url = self.context.settings.public_url or self.url
                log.debug("API listening on %s", self.url)
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    stop.set()
                    server_scope.deadline = trio.current_time() + self.grace_seconds
        finally:
            listener.close()


def _quiet_logger(name: str) -> logging.Logger:
    """Hypercorn's log, without its "Running on ..." line (Thotto says where it listens)."""
    logger = logging.getLogger(name)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    return logger


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, type_, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, type_, proto)
    except OSError as error:
        raise ConfigError(f"Invalid setting api_host (THOTTO_API_HOST): {host!r}: {error}") from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as error:
        listener.close()
        raise ConfigError(f"Cannot listen on {host}:{port} ({error.strerror}); set api_port "
                          f"(THOTTO_API_PORT) to a free port, or stop what uses it") from None
    return listener
