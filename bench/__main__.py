"""``python -m bench SUITE... [--store sqlite|postgres] [--quick] [--json FILE]``.

Prints a results table with the targets from the issues; ``--json`` writes
``{"env": {...}, "results": [{"name", "store", "value", "unit", ...params}]}``.
"""

from __future__ import annotations

import argparse
import functools
import sys

import trio

from bench import cache as cache_bench
from bench import queue as queue_bench
from bench import store as store_bench
from bench.common import Result, print_table, write_json
from bench.databases import DEFAULT_POSTGRES

SUITES = {"store": store_bench, "queue": queue_bench, "cache": cache_bench}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("suites", nargs="*", default=["store"], choices=sorted(SUITES),
                        metavar="SUITE", help=f"one or more of: {', '.join(sorted(SUITES))}")
    parser.add_argument("--store", action="append", choices=["sqlite", "postgres"],
                        help="store(s) to measure; repeatable (default: sqlite)")
    parser.add_argument("--postgres-dsn", default=DEFAULT_POSTGRES,
                        help="a server to create throwaway databases on (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the benches run")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--jobs", type=int, help="queue: how many jobs the drain runs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    results: list[Result] = []
    targets: dict[str, tuple[str, float]] = {}
    for suite_name in args.suites:
        suite = SUITES[suite_name]
        targets.update(suite.TARGETS)
        for kind in args.store or ["sqlite"]:
            print(f"{suite_name} on {kind}{' (quick)' if args.quick else ''}:", flush=True)
            options = {"jobs": args.jobs} if suite is queue_bench else {}
            results += trio.run(functools.partial(suite.run, kind, args.quick, args.postgres_dsn, **options))
    print()
    print_table(results, targets)
    if args.json:
        write_json(args.json, results)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
