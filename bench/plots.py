"""``--plot DIR``: PNGs from the results of one run (matplotlib, the ``bench`` extra).

* ``ratios.png``: every figure that has a reference, as its ratio to it (Thotto ÷ raw loop,
  Thotto ÷ peer, 4 processes ÷ 1), with its target; the figures that mean something on any
  machine.
* ``lateness.png``: distribution (CDF) of how late jobs started, per store and peer, with bare
  ``trio.sleep_until`` timers (the floor) beside them.
* ``drain.png``: jobs completed over time while draining a full queue, per store (the legend gives
  the rate as a ratio to the raw claim+complete loop).
* ``cache_hit_ratio.png``: Zipf(1.0) hit ratio against LRU cache size, with the ideal bound.
* ``scaleout.png``: speed-up (drain rate ÷ one process's) and CPU per job (÷ one process's)
  against worker processes on one Postgres, each process on a fixed CPU quota.
* ``popular.png``: distribution (CDF) of how late the posts of the popular minute were published.

A plot whose data was not measured in this run is left out.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from bench.common import Result, Targets, target_for, verdict

INSTALL_HINT = ("--plot needs matplotlib: pip install -e '.[bench]' "
                "(or .venv/bin/pip install matplotlib)")


def missing_dependency() -> str | None:
    """None when matplotlib can be imported, else how to install it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    return None


def draw(results: list[Result], directory: str, targets: Targets | None = None) -> list[str]:
    """Draw every plot the results have data for; the paths written."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    os.makedirs(directory, exist_ok=True)
    written = []
    for name, plot in PLOTS.items():
        path = os.path.join(directory, name)
        if plot(results, path, targets or {}):
            written.append(path)
    return written


def _label(result: Result) -> str:
    system = result.params.get("system", "thotto")
    return f"{system} ({result.store})" if result.store else system


def lateness(results: list[Result], path: str, targets: Targets) -> bool:
    series = [r for r in results if r.name.endswith(("lateness.p50", "sleep_until.p50"))
              and "samples_ms" in r.series]
    if not series:
        return False
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for result in series:
        samples = result.series["samples_ms"]
        fractions = [(i + 1) / len(samples) for i in range(len(samples))]
        label = (f"floor, bare trio.sleep_until ({result.store})" if result.name.startswith("raw.")
                 else f"{result.name.split('.')[0]}: {_label(result)}")
        axes.step(samples, fractions, where="post", label=label,
                  linestyle=":" if result.name.startswith("raw.") else "-")
    axes.set_xscale("symlog", linthresh=1)
    axes.set_xlabel("lateness: start minus due time (ms)")
    axes.set_ylabel("share of jobs started (CDF)")
    axes.set_title("Lateness of scheduled jobs")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


def drain(results: list[Result], path: str, targets: Targets) -> bool:
    series = [r for r in results if "completed_over_time" in r.series]
    if not series:
        return False
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for result in series:
        seconds, completed = zip(*result.series["completed_over_time"])
        ratio = result.params.get("ratio")
        versus = f", {ratio:.2g}x raw" if ratio is not None and result.params.get("reference") else ""
        axes.plot(seconds, completed,
                  label=f"{result.name}: {_label(result)} ({result.value:,.0f} jobs/s{versus})")
    axes.set_xlabel("seconds since the engine opened")
    axes.set_ylabel("jobs completed")
    axes.set_title("Draining a full queue")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


def cache_hit_ratio(results: list[Result], path: str, targets: Targets) -> bool:
    series = [r for r in results if "hit_ratio_by_size" in r.series]
    if not series:
        return False
    import matplotlib.pyplot as plt

    entries, lru, ideal = zip(*series[0].series["hit_ratio_by_size"])
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(entries, lru, marker="o", label="Thotto L1 (LRU)")
    axes.plot(entries, ideal, linestyle="--", label="ideal cache (most popular keys)")
    axes.axhline(95, color="grey", linewidth=0.8, linestyle=":", label="95% target")
    axes.set_xscale("log")
    axes.set_xticks(entries, [f"{e:,}" for e in entries])
    axes.minorticks_off()
    axes.set_xlabel(f"cache entries (of {series[0].params['keys']:,} keys, Zipf s=1.0)")
    axes.set_ylabel("database reads saved (%)")
    axes.set_title("Cache hit ratio against cache size")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


def scaleout(results: list[Result], path: str, targets: Targets) -> bool:
    rates = _by_processes(results, "scaleout.drain.")
    cpu = _by_processes(results, "scaleout.cpu_per_1k.")
    if not rates and not cpu:
        return False
    import matplotlib.pyplot as plt

    figure, (speed, cost) = plt.subplots(1, 2, figsize=(10, 4))
    if rates and 1 in rates:
        processes = sorted(rates)
        speed.plot(processes, [rates[n] / rates[1] for n in processes], marker="o", label="measured")
        speed.plot(processes, processes, linestyle="--", label="linear")
        speed.plot([4], [3.2], marker="x", linestyle="", color="grey", label="target: 3.2x at 4")
        speed.set_xticks(processes)
    quota = next((r.value for r in results if r.name == "scaleout.cpu_quota"), None)
    speed.set_xlabel(f"worker processes, {quota or 'no'} core quota each ({os.cpu_count()} cores)")
    speed.set_ylabel("drain rate ÷ one process's")
    speed.set_title("Scale-out: speed-up")
    if cpu and 1 in cpu:
        processes = sorted(cpu)
        cost.plot(processes, [cpu[n] / cpu[1] for n in processes], marker="o", label="measured")
        cost.axhline(1.25, color="grey", linewidth=0.8, linestyle=":", label="target: at most 1.25x")
        cost.set_xticks(processes)
    cost.set_xlabel("worker processes")
    cost.set_ylabel("CPU s per 1,000 jobs ÷ one process's")
    cost.set_title("Scale-out: CPU per job (workers + Postgres)")
    for axes in (speed, cost):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    return _save(figure, path)


def _by_processes(results: list[Result], prefix: str) -> dict[int, float]:
    return {r.params["processes"]: r.value for r in results if r.name.startswith(prefix)}


def ratios(results: list[Result], path: str, targets: Targets) -> bool:
    """One bar per figure with a ratio (log scale), coloured by its target: met, missed, none."""
    rows = [r for r in results if isinstance(r.params.get("ratio"), (int, float))
            and (r.params.get("reference") or r.name.endswith((".drain", ".enqueue")))]
    # A peer's figure that a Thotto target is judged against already has its bar (the target's).
    judged = {(target.of, r.store) for r in rows
              if (target := target_for(r, targets)) is not None and target.of is not None}
    rows = [r for r in rows if r.params.get("reference") or (r.name, r.store) not in judged]
    if not rows:
        return False
    import matplotlib.pyplot as plt

    colours = {"ok": "tab:green", "MISSED": "tab:red"}
    figure, axes = plt.subplots(figsize=(9, 0.35 * len(rows) + 1.2))
    labels = []
    for index, result in enumerate(rows):
        target = target_for(result, targets)
        of = result.params.get("reference") or "thotto ÷ peer"
        labels.append(f"{result.name} ({result.store or '-'}) ÷ {of}" if result.params.get("reference")
                      else f"{of}: {result.name} ({result.store})")
        axes.barh(index, result.params["ratio"], color=colours.get(verdict(result, target), "tab:grey"))
        if target is not None and target.of is not None:
            axes.plot([target.bound], [index], marker="|", markersize=14, color="black")
    axes.set_yticks(range(len(rows)), labels, fontsize="x-small")
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.axvline(1, color="grey", linewidth=0.8)
    axes.set_xlabel("ratio (black tick: target; green met, red missed, grey no target)")
    axes.set_title("Figures as ratios to references measured in the same run")
    axes.grid(True, axis="x", alpha=0.3)
    return _save(figure, path)


def popular(results: list[Result], path: str, targets: Targets) -> bool:
    series = [r for r in results if r.name == "popular.lateness.p50" and "samples_s" in r.series]
    if not series:
        return False
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for result in series:
        samples = sorted(result.series["samples_s"])
        fractions = [(i + 1) / len(samples) for i in range(len(samples))]
        axes.step(samples, fractions, where="post", label=f"thotto ({result.store})")
    axes.axvline(90, color="grey", linewidth=0.8, linestyle=":", label="target: all within 90 s")
    axes.set_xlabel("publication minus scheduled time (s)")
    axes.set_ylabel("share of posts published (CDF)")
    axes.set_title(f"The popular minute: {series[0].params['posts']:,} posts, "
                   f"{series[0].params['accounts']:,} accounts")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


def _save(figure, path: str) -> bool:
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return True


PLOTS: dict[str, Callable[[list[Result], str, Targets], bool]] = {
    "ratios.png": ratios,
    "lateness.png": lateness,
    "drain.png": drain,
    "cache_hit_ratio.png": cache_hit_ratio,
    "scaleout.png": scaleout,
    "popular.png": popular,
}
