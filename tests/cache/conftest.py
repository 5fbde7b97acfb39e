"""Cache fixtures: a virtual clock aware of the sidecar, unique Redis namespaces, and a private
redis-server a test may kill and restart."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid

import pytest

from tests.conftest import missing_service
from tests.support.clock import thread_aware_mock_clock


@pytest.fixture
def mock_clock():
    """Virtual time that does not jump while a Redis call is in flight (see tests/support/clock.py).
    pytest-trio uses it only in tests that name ``mock_clock`` as an argument."""
    return thread_aware_mock_clock()


@pytest.fixture
def namespace():
    """A Redis key namespace of this test's own, so tests sharing the session's Redis never meet."""
    return f"t{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server child process on a fixed free port: ``kill()`` it, ``start()`` it again."""

    def __init__(self, directory):
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def redis_server(tmp_path):
    """A private redis-server for this test (it may be killed and restarted)."""
    if shutil.which("redis-server") is None:
        missing_service("Redis (redis-server)")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()
