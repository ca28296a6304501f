"""``python -m bench``: run the benchmarks, write JSON + PNG results, print the summary table.

Exit status: 0 when every selected benchmark *ran*, whether or not it met its target
(benchmarks are evidence, not assertions); 1 when any benchmark could not run (its
traceback is printed and the table says ERROR); 2 for a bad command line.

Quick mode writes into a temporary directory unless ``--out`` is given, so CI runs never
touch the committed results in ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

from bench.common import Context, Mode, Outcome, Row, format_table, write_json
from shared.telemetry import configure_logging

#: Benchmark name → module, in the order of issue 7.
BENCHMARKS: dict[str, str] = {
    "lookup": "bench.lookup",
    "fanout": "bench.fanout",
    "mongo_reads": "bench.mongo_reads",
    "warmup": "bench.warmup",
    "ingest": "bench.ingest",
    "failover": "bench.failover",
    "propagation": "bench.propagation",
    "handover": "bench.handover",
    "redis_failover": "bench.redis_failover",
    "burst": "bench.burst",
    "fanout_curve": "bench.fanout_curve",
}

RESULTS = Path(__file__).resolve().parent / "results"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of source-config-cache against the per-replica design "
        "and the bare mechanism underneath (see bench/README.md).",
    )
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--quick", action="store_true", help="tiny sizes, proves the benchmarks run (CI)"
    )
    sizes.add_argument("--full", action="store_true", help="more samples than the default run")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only these ({', '.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="results directory (default: bench/results, or a temporary one with --quick)",
    )
    return parser.parse_args(argv)


def _run_one(name: str, ctx: Context) -> Outcome:
    module = importlib.import_module(BENCHMARKS[name])
    run = cast(Callable[[Context], Coroutine[Any, Any, Outcome]], module.run)
    outcome: Outcome = asyncio.run(run(ctx))
    outcome.files.insert(0, write_json(ctx.out_dir / f"{name}.json", outcome.data))
    return outcome


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; see the module docstring for the exit status."""
    args = _parse(argv)
    mode: Mode = "quick" if args.quick else "full" if args.full else "default"
    out_dir: Path = args.out or (
        Path(tempfile.mkdtemp(prefix="scc-bench-quick-")) if args.quick else RESULTS
    )
    ctx = Context(mode=mode, out_dir=out_dir)
    configure_logging(fmt="console", level="warning")  # the product's own logs, on stderr
    names = args.only or list(BENCHMARKS)
    rows: list[Row] = []
    failed: list[str] = []
    started = time.monotonic()
    for name in names:
        ctx.log(f"== {name} ({mode})")
        try:
            outcome = _run_one(name, ctx)
        except Exception:
            traceback.print_exc()
            ctx.log(f"!! {name} could not run")
            failed.append(name)
            rows.append(Row(name, "ERROR", "-", "-", "-", False, "could not run"))
            continue
        rows.extend(outcome.rows)
        for path in outcome.files:
            ctx.log(f"   wrote {path}")
    elapsed = time.monotonic() - started
    table = format_table(rows)
    footer = f"mode={mode}  results={out_dir}  took {elapsed:.1f}s"
    print()
    print(table)
    print()
    print(footer)
    (out_dir / "summary.txt").write_text(f"{table}\n\n{footer}\n")
    if failed:
        print(f"could not run: {', '.join(failed)}; process logs in {ctx.scratch}", file=sys.stderr)
        return 1
    shutil.rmtree(ctx.scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
