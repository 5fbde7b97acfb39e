"""``python -m bench [SUITE...] [--store sqlite|postgres] [--quick] [--json FILE] [--plot DIR]``
(also ``thotto bench ...``).

Runs the suites (all of them when none is named), one progress line per step on stderr, then
prints a results table with the targets from the issues: speed targets are ratios to a reference
measured in the same run (a raw sqlite3 or asyncpg loop on Thotto's schema, a peer), since the
machines here differ by 3-4x from one day to the next. ``--json`` writes
``{"env": {...}, "results": [{"name", "store", "value", "unit", ...params}]}``; ``--plot`` draws
PNGs (needs the ``bench`` extra: matplotlib). ``--quick`` runs everything small: it checks that
the benches run, never what they measure.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys

import trio

from bench.common import Result, Target, Targets, attach_references, print_table, progress, write_json
from bench.databases import DEFAULT_POSTGRES

# Suite name → module. Each module has TARGETS, STORES and ``async run(kind, quick, dsn, **opts)``,
# and may have REFERENCES (results shown as a ratio to another without a target).
# STORES None: the stores chosen with --store; (None,): store-independent; else a fixed list.
SUITE_NAMES = ["store", "queue", "cache", "memory", "scaleout", "reliability", "peers", "api",
               "popular", "media"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suites", nargs="*", metavar="SUITE",
                        help=f"any of: {', '.join(SUITE_NAMES)} (default: all)")
    parser.add_argument("--store", action="append", choices=["sqlite", "postgres"],
                        help="store(s) for the store-specific suites; repeatable (default: sqlite)")
    parser.add_argument("--postgres-dsn", default=DEFAULT_POSTGRES,
                        help="a server to create throwaway databases on (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the benches run")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="DIR", help="also draw PNG plots into DIR (needs matplotlib)")
    parser.add_argument("--jobs", type=int, help="queue: how many jobs the drain runs")
    args = parser.parse_args(argv)
    unknown = [name for name in args.suites if name not in SUITE_NAMES]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITE_NAMES)}")
    args.suites = args.suites or SUITE_NAMES
    return args


def suite_module(name: str):
    return importlib.import_module(f"bench.{name}")


def run_suites(args: argparse.Namespace) -> tuple[list[Result], Targets]:
    """Run each suite on each store it applies to; a fresh Trio run per suite and store. Each
    figure with a reference gets its ratio to it as soon as its suite has run."""
    results: list[Result] = []
    targets: Targets = {}
    references: dict[str, str] = {}
    for name in args.suites:
        suite = suite_module(name)
        targets.update({key: Target(*target) for key, target in suite.TARGETS.items()})
        references.update(getattr(suite, "REFERENCES", {}))
        stores = suite.STORES if suite.STORES is not None else (args.store or ["sqlite"])
        for kind in stores:
            progress(f"{name}{f' on {kind}' if kind else ''}{' (quick)' if args.quick else ''}")
            options = {"jobs": args.jobs} if name == "queue" else {}
            run = functools.partial(suite.run, kind, args.quick, args.postgres_dsn, **options)
            fresh = trio.run(run)
            attach_references(fresh, results, targets, references)
            results += fresh
    return results, targets


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.plot:
        from bench import plots

        missing = plots.missing_dependency()
        if missing:  # say so before minutes of measuring, not after
            print(missing, file=sys.stderr)
            return 2
    results, targets = run_suites(args)
    print()
    print_table(results, targets)
    if args.json:
        write_json(args.json, results, args.postgres_dsn, targets)
        print(f"\nwrote {args.json}")
    if args.plot:
        for path in plots.draw(results, args.plot, targets):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
