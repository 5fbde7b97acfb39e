"""Named fault injectors for the chaos suite. Each does one thing to one real component.

Processes: :func:`kill_9`, :func:`sigterm`, :func:`kill_during_sqlite_commit`,
:func:`jump_clock`. Storage: :func:`stop_postgres`, :func:`start_postgres`, :func:`kill_redis`,
:func:`start_redis`. Reddit (the sandbox's control API): :func:`reddit_503_storm`,
:func:`reddit_429_storm`, :func:`reddit_ratelimit_storm`, :func:`latency_spike`,
:func:`accept_then_drop`, :func:`expire_tokens`, :func:`reddit_recovers`.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import time
from pathlib import Path

import trio

from tests.chaos.harness import RedisServer, SandboxProcess, ThottoProcess
from tests.support.postgres import PostgresServer

# --- processes -------------------------------------------------------------------------------


async def kill_9(thotto: ThottoProcess) -> None:
    """SIGKILL: no cleanup at all (leases stay held until they expire); waits until it is gone."""
    thotto.signal(signal.SIGKILL)
    await thotto.wait(timeout=10)


async def sigterm(thotto: ThottoProcess, timeout: float = 60) -> int:
    """SIGTERM, as a service manager stops Thotto; returns the exit code once it exited."""
    thotto.signal(signal.SIGTERM)
    return await thotto.wait(timeout)


async def kill_during_sqlite_commit(thotto: ThottoProcess, database: str | Path, timeout: float = 30) -> int:
    """SIGKILL the process while its SQLite writer is inside a (group-commit) write transaction.

    In WAL mode a write transaction holds the WAL write lock (an fcntl lock on byte 120 of the
    ``-shm`` file) from its first write until it commits. This asks the kernel, without taking
    any lock (``F_GETLK``), whether the Thotto process holds it, and kills the process the moment
    it does: mid-transaction, before or during its commit. Returns how many polls it took; fails
    if no write transaction was caught within ``timeout``.
    """
    fd = os.open(f"{database}-shm", os.O_RDONLY)
    deadline = time.monotonic() + timeout
    polls = 0
    try:
        while True:
            polls += 1
            if _holds_wal_write_lock(fd) == thotto.pid:
                os.kill(thotto.pid, signal.SIGKILL)
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"no SQLite write transaction seen in {timeout:g} s")
            if polls % 20 == 0:
                await trio.sleep(0)  # let other tasks in now and then; stay tight otherwise
    finally:
        os.close(fd)  # we hold no lock on this file, so closing it drops nothing
    await thotto.wait(timeout=10)
    return polls


_FLOCK = "@hhqqi4x"  # struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid
_WAL_WRITE_LOCK_BYTE = 120  # SQLite's WALINDEX_LOCK_OFFSET + WAL_WRITE_LOCK


def _holds_wal_write_lock(fd: int) -> int:
    """The pid holding SQLite's WAL write lock, or 0."""
    query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, _WAL_WRITE_LOCK_BYTE, 1, 0)
    l_type, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, query))
    return 0 if l_type == fcntl.F_UNLCK else pid


async def jump_clock(thotto: ThottoProcess) -> None:
    """Move the process's wall clock forward by its ``--jump-seconds`` (SIGUSR1)."""
    thotto.signal(signal.SIGUSR1)


# --- storage ---------------------------------------------------------------------------------


async def stop_postgres(server: PostgresServer) -> None:
    """Stop Postgres (fast: every session is terminated, as in a failover or a restart)."""
    await trio.to_thread.run_sync(server.stop, "fast")


async def start_postgres(server: PostgresServer) -> None:
    """Start the stopped Postgres again on the same port and data."""
    await trio.to_thread.run_sync(server.start)


def kill_redis(redis: RedisServer) -> None:
    """SIGKILL redis-server (no persistence: it comes back empty)."""
    redis.kill()


async def start_redis(redis: RedisServer) -> None:
    await trio.to_thread.run_sync(redis.start)


# --- Reddit (the sandbox) --------------------------------------------------------------------


async def reddit_503_storm(sandbox: SandboxProcess, rate: float = 1.0) -> None:
    """Reddit is down: every API and token request answers 503."""
    await sandbox.faults(errors=[{"status": 503, "rate": rate}])


async def reddit_429_storm(sandbox: SandboxProcess, count: int, reset: float = 1.0) -> None:
    """The next ``count`` API requests get 429 with exhausted rate-limit headers."""
    await sandbox.faults(too_many_requests={"count": count, "reset": reset})


async def reddit_ratelimit_storm(sandbox: SandboxProcess, count: int, seconds: float = 1.0) -> None:
    """The next ``count`` submissions get Reddit's ``RATELIMIT`` error ("try again in N s")."""
    await sandbox.faults(ratelimit={"count": count, "seconds": seconds})


async def latency_spike(sandbox: SandboxProcess, seconds: float, path: str | None = "/api/submit") -> None:
    """Every request (under ``path``) waits ``seconds`` before being handled."""
    await sandbox.faults(latency=seconds, latency_path=path)


async def accept_then_drop(sandbox: SandboxProcess, count: int) -> None:
    """The next ``count`` submissions are recorded, then the connection drops before the reply."""
    await sandbox.faults(drop_after_accept=count)


async def expire_tokens(sandbox: SandboxProcess) -> None:
    """Every access token expires now (clients must refresh or log in again)."""
    await sandbox.faults(expire_tokens=True)


async def reddit_recovers(sandbox: SandboxProcess) -> None:
    """Clear every fault."""
    await sandbox.faults()
