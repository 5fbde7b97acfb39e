"""CPU budgets for bench processes (Linux control groups) and the CPU time processes used.

:class:`CpuQuota` caps each process it is given at a fixed share of one core: a control group
per process with a CFS quota (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us`` where the cpu
controller is mounted as v1, as on this machine). It needs root and a writable cpu hierarchy;
:func:`open_cpu_quota` says why when it cannot set one. With a quota, N processes have exactly N
budgets even on a 2-core machine shared with others, so a scale-out curve measures Thotto, not
how many cores happened to be free.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

PERIOD_US = 100_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class QuotaUnavailable(Exception):
    """No CPU quota can be set here; the message says why."""


class CpuQuota:
    """One parent group for this run and one child group per process added, each capped at
    ``cores`` (a share of one core). Close it (see :func:`open_cpu_quota`) after the processes
    have exited: the groups are removed."""

    def __init__(self, parent: Path, version: int, cores: float):
        self.parent = parent
        self.version = version
        self.cores = cores
        self.groups: list[Path] = []

    def add(self, pid: int) -> None:
        """Put process ``pid`` (all its threads) in a fresh group of its own, under the cap;
        :class:`QuotaUnavailable` if the system refuses (a container may allow the groups but
        not the move)."""
        group = self.parent / f"process-{len(self.groups)}"
        try:
            group.mkdir()
            self.groups.append(group)
            quota_us = round(self.cores * PERIOD_US)
            if self.version == 2:
                (group / "cpu.max").write_text(f"{quota_us} {PERIOD_US}")
            else:
                (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (group / "cpu.cfs_quota_us").write_text(str(quota_us))
            (group / "cgroup.procs").write_text(str(pid))
        except OSError as error:
            raise QuotaUnavailable(f"cannot cap process {pid} in {group}: {error.strerror}") from error

    def throttled_seconds(self) -> float:
        """How long, in all, the groups' processes were held back by their quota."""
        total = 0.0
        for group in self.groups:
            stats = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
            if "throttled_usec" in stats:
                total += int(stats["throttled_usec"]) / 1e6
            elif "throttled_time" in stats:  # v1: nanoseconds
                total += int(stats["throttled_time"]) / 1e9
        return total

    def remove(self) -> list[str]:
        """Remove the groups (their processes must have exited); what could not be removed."""
        left = []
        for group in [*reversed(self.groups), self.parent]:
            try:
                group.rmdir()
            except OSError as error:
                left.append(f"{group}: {error.strerror}")
        return left


@contextlib.contextmanager
def open_cpu_quota(cores: float) -> Iterator[CpuQuota]:
    """A :class:`CpuQuota` of ``cores`` per process, removed on exit; raises
    :class:`QuotaUnavailable` (with the reason) if this machine or user cannot have one."""
    mount, version = cpu_hierarchy()
    parent = mount / f"thotto-bench-{os.getpid()}"
    try:
        parent.mkdir()
        if version == 2:
            _enable_cpu(mount)
            _enable_cpu(parent)
    except OSError as error:
        with contextlib.suppress(OSError):
            parent.rmdir()
        raise QuotaUnavailable(f"cannot create a cpu control group in {mount}: {error.strerror} "
                               "(run as root on a writable cgroup hierarchy)") from error
    quota = CpuQuota(parent, version, cores)
    try:
        yield quota
    finally:
        quota.remove()


def cpu_hierarchy(mounts_file: Path = Path("/proc/self/mounts")) -> tuple[Path, int]:
    """Where the cpu controller is mounted, and as which cgroup version."""
    try:
        mounts = mounts_file.read_text().splitlines()
    except OSError as error:
        raise QuotaUnavailable(f"cannot read {mounts_file}: {error.strerror}") from error
    for line in mounts:
        _, where, kind, options, *_ = line.split()
        if kind == "cgroup" and "cpu" in options.split(","):
            return Path(where), 1
        if kind == "cgroup2":
            controllers = Path(where, "cgroup.controllers")
            if controllers.exists() and "cpu" in controllers.read_text().split():
                return Path(where), 2
    raise QuotaUnavailable("no cpu cgroup controller is mounted (neither v1 nor v2)")


def _enable_cpu(group: Path) -> None:
    control = group / "cgroup.subtree_control"
    if "cpu" not in control.read_text().split():
        control.write_text("+cpu")


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (all its threads), or None if it
    cannot be read (gone, or not on this machine)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after it are plain.
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
