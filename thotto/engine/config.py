"""The engine's settings: where its job store lives and how its workers run.

:class:`thotto.config.Settings` (the product's, read from ``THOTTO_*`` variables and TOML)
extends :class:`EngineSettings`, so an embedder may pass either.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import msgspec


class ProcessRole(enum.Enum):
    """What a process runs: everything, only the HTTP API, or only the workers."""

    ALL = "all"
    API = "api"
    WORKER = "worker"


class EngineSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every setting the job engine reads. Field docs become the reference table in the docs."""

    data_dir: str = "thotto-data"
    """Directory for the SQLite database, the encryption key and other local state."""

    database_url: str | None = None
    """``sqlite:///path``, a file path, or ``postgresql://...``; default: SQLite in data_dir."""

    role: ProcessRole = ProcessRole.ALL
    """all | api | worker."""

    shutdown_grace_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 25.0
    """How long in-flight jobs may finish after SIGINT/SIGTERM before they are cancelled."""

    workers: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 8
    """Worker pool size: jobs run at once by this process (beside the I/O workers)."""

    io_workers: Annotated[int, msgspec.Meta(ge=0, le=10000)] = 64
    """Jobs of kinds registered ``io_bound`` (they wait on the network: Reddit submissions,
    webhooks) run at once by this process, beside the workers: at ~0.2 s a submission, N in
    flight publish up to 5 N posts a second (within the Reddit budget). 0: they share the
    workers."""

    lease_seconds: Annotated[float, msgspec.Meta(ge=1, le=86400)] = 30.0
    """How long a claimed job stays ours without a heartbeat (renewed every third of it)."""

    lookahead_ms: Annotated[float, msgspec.Meta(ge=0, le=10000)] = 50.0
    """Claim jobs due this soon ahead of time, so each starts at its exact instant."""

    max_prefetch: Annotated[int, msgspec.Meta(ge=0, le=100000)] = 1000
    """Most jobs claimed beyond the workers' capacity (the prefetch follows the job rate)."""

    sweep_interval_seconds: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 5.0
    """How often expired leases are looked for."""

    retention_days: Annotated[float, msgspec.Meta(ge=0.01, le=36500)] = 30.0
    """Finished jobs and posts older than this are purged by the daily retention job."""

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``<data_dir>/thotto.db``."""
        return self.database_url or str(Path(self.data_dir) / "thotto.db")
