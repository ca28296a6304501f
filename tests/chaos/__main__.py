"""``python -m tests.chaos [--long] [--scenario NAME ...] [--seeds N] [--seed S]`` (``make chaos``).

Runs each chosen scenario once per seed against a fresh fleet of real processes, prints
one line per run as it finishes (with the diff and log directory when it failed), then
the per-scenario table: runs, divergences, monotonic violations, stale reads, full
reloads, resyncs, max lag, time to converge. Exit
status 0 when every run kept every invariant, 1 otherwise, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from shared.telemetry import configure_logging
from tests.chaos.profile import LONG, SHORT
from tests.chaos.reporting import RunResult, print_table
from tests.chaos.running import run_all
from tests.chaos.scenarios import BY_NAME, SCENARIOS


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description="Fault-injection scenarios against real watcher and replica processes, "
        "a real redis-server and the MongoDB wire double (issues 8 and 11).",
        epilog="scenarios:\n" + "\n".join(f"  {s.name:16} {s.title}" for s in SCENARIOS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--long", action="store_true", help="the long profile (minutes per scenario)"
    )
    parser.add_argument(
        "--scenario",
        action="extend",
        nargs="+",
        choices=sorted(BY_NAME),
        metavar="NAME",
        help="run only these scenarios (default: all)",
    )
    parser.add_argument(
        "--seeds", type=int, default=5, help="runs per scenario, seeds S..S+N-1 (default 5)"
    )
    parser.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where run directories (logs) go"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print, and return the exit status."""
    args = build_parser().parse_args(argv)
    if args.seeds < 1:
        build_parser().error("--seeds must be at least 1")
    configure_logging(fmt="console", level="warning")
    profile = LONG if args.long else SHORT
    scenarios = [BY_NAME[name] for name in args.scenario] if args.scenario else list(SCENARIOS)
    seeds = list(range(args.seed, args.seed + args.seeds))
    out = sys.stdout
    out.write(f"chaos: {len(scenarios)} scenario(s) x seeds {seeds}, {profile.name} profile\n")
    started = time.monotonic()

    def show(result: RunResult) -> None:
        status = "ok" if result.ok else "FAILED"
        out.write(
            f"  {result.scenario:16} seed {result.seed:<3} {status:6} {result.duration_s:6.1f} s\n"
        )
        if not result.ok:
            out.write(result.describe() + "\n")
        out.flush()

    results = run_all(
        scenarios, profile=profile, seeds=seeds, workdir_root=args.workdir, on_result=show
    )
    out.write(f"\n{len(results)} run(s) in {time.monotonic() - started:.0f} s\n\n")
    print_table(results, out)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
