"""The scale-out bench's CPU budgets: a real control group per process where the machine allows
one, and the CPU cost alone, said so, where it does not."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest

from bench import scaleout
from bench.cgroups import QuotaUnavailable, cpu_hierarchy, open_cpu_quota, process_cpu_seconds

NO_CPU_MOUNTS = "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n"
V1_MOUNTS = ("cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0\n"
             "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n")


def test_the_cpu_controller_is_found_where_it_is_mounted_as_v1(tmp_path):
    (tmp_path / "mounts").write_text(V1_MOUNTS)
    assert cpu_hierarchy(tmp_path / "mounts") == (Path("/sys/fs/cgroup/cpu"), 1)


def test_no_cpu_controller_says_why(tmp_path):
    (tmp_path / "mounts").write_text(NO_CPU_MOUNTS)
    with pytest.raises(QuotaUnavailable, match="no cpu cgroup controller is mounted"):
        cpu_hierarchy(tmp_path / "mounts")


def test_a_process_is_capped_in_a_group_of_its_own_removed_afterwards():
    with contextlib.ExitStack() as stack:
        try:
            quota = stack.enter_context(open_cpu_quota(0.2))
        except QuotaUnavailable as unavailable:
            pytest.skip(f"no CPU quota on this machine: {unavailable}")
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        stack.callback(sleeper.wait)
        stack.callback(sleeper.kill)  # callbacks run last first: kill, then reap
        quota.add(sleeper.pid)
        (group,) = quota.groups
        assert (group / "cgroup.procs").read_text().split() == [str(sleeper.pid)]
        limit = (group / ("cpu.max" if quota.version == 2 else "cpu.cfs_quota_us")).read_text()
        assert limit.split()[0] == "20000"
        assert process_cpu_seconds(sleeper.pid) is not None
    assert not quota.parent.exists()


async def test_without_a_quota_the_scaleout_reports_the_cpu_cost_alone(postgres_dsn, monkeypatch):
    def unavailable(cores: float):
        raise QuotaUnavailable("no cpu cgroup controller is mounted (neither v1 nor v2)")

    monkeypatch.setattr(scaleout, "open_cpu_quota", unavailable)
    results = {r.name: r for r in await scaleout.run("postgres", True, postgres_dsn)}
    quota = results["scaleout.cpu_quota"]
    assert quota.value == 0 and "no cpu cgroup controller" in quota.params["note"]
    expected = {"scaleout.unthrottled.drain.1", "scaleout.unthrottled.drain.4", "scaleout.cpu_per_1k.4"}
    assert expected <= set(results)
    assert not any(name.startswith("scaleout.drain.") for name in results)  # no speed-up is claimed
    assert results["scaleout.cpu_per_1k.1"].params["throttled_s"] is None
