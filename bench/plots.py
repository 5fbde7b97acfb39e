"""``--plot DIR``: PNGs from the results of one run (matplotlib, the ``bench`` extra).

* ``lateness.png``: distribution (CDF) of how late jobs started, per store and peer.
* ``drain.png``: jobs completed over time while draining a full queue, per store.
* ``cache_hit_ratio.png``: Zipf(1.0) hit ratio against LRU cache size, with the ideal bound.
* ``scaleout.png``: drain rate against worker processes on one Postgres, with linear scaling.

A plot whose data was not measured in this run is left out.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from bench.common import Result

INSTALL_HINT = ("--plot needs matplotlib: pip install -e '.[bench]' "
                "(or /work/venv/bin/pip install matplotlib)")


def missing_dependency() -> str | None:
    """None when matplotlib can be imported, else how to install it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    return None


def draw(results: list[Result], directory: str) -> list[str]:
    """Draw every plot the results have data for; the paths written."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    os.makedirs(directory, exist_ok=True)
    written = []
    for name, plot in PLOTS.items():
        path = os.path.join(directory, name)
        if plot(results, path):
            written.append(path)
    return written


def _label(result: Result) -> str:
    system = result.params.get("system", "thotto")
    return f"{system} ({result.store})" if result.store else system


def lateness(results: list[Result], path: str) -> bool:
    series = [r for r in results if r.name.endswith("lateness.p50") and "samples_ms" in r.series]
    if not series:
        return False
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for result in series:
        samples = result.series["samples_ms"]
        fractions = [(i + 1) / len(samples) for i in range(len(samples))]
        axes.step(samples, fractions, where="post", label=f"{result.name.split('.')[0]}: {_label(result)}")
    axes.set_xscale("symlog", linthresh=1)
    axes.set_xlabel("lateness: start minus due time (ms)")
    axes.set_ylabel("share of jobs started (CDF)")
    axes.set_title("Lateness of scheduled jobs")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


def drain(results: list[Result], path: str) -> bool:
    series = [r for r in results if "completed_over_time" in r.series]
    if not series:
        return False
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for result in series:
        seconds, completed = zip(*result.series["completed_over_time"])
        axes.plot(seconds, completed, label=f"{result.name}: {_label(result)} ({result.value:,.0f} jobs/s)")
    axes.set_xlabel("seconds since the engine opened")
    axes.set_ylabel("jobs completed")
    axes.set_title("Draining a full queue")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


def cache_hit_ratio(results: list[Result], path: str) -> bool:
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


def scaleout(results: list[Result], path: str) -> bool:
    points = sorted((r.params["processes"], r.value) for r in results if r.name.startswith("scaleout.drain."))
    if not points:
        return False
    import matplotlib.pyplot as plt

    processes, rates = zip(*points)
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(processes, rates, marker="o", label="measured")
    one = dict(points).get(1)
    if one:
        axes.plot(processes, [one * n for n in processes], linestyle="--", label="linear scaling")
        axes.plot([4], [one * 2.5], marker="x", linestyle="", color="grey", label="target: 2.5x one at 4")
    axes.set_xticks(processes)
    axes.set_xlabel(f"worker processes on one Postgres ({os.cpu_count()} cores)")
    axes.set_ylabel("jobs/s")
    axes.set_title("Scale-out: draining one queue")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, path)


def _save(figure, path: str) -> bool:
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return True


PLOTS: dict[str, Callable[[list[Result], str], bool]] = {
    "lateness.png": lateness,
    "drain.png": drain,
    "cache_hit_ratio.png": cache_hit_ratio,
    "scaleout.png": scaleout,
}
