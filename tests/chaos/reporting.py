"""Results of chaos runs as data, and the table ``python -m tests.chaos`` prints.

Why it exists: the pytest entry asserts on the same :class:`RunResult` the command line
prints, so "the table says 0 divergences" and "the test passed" cannot disagree.
A run never raises for a broken invariant; it lists it in ``violations``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, TextIO


@dataclass
class RunResult:
    """One scenario, one seed: the numbers of the table and every broken invariant."""

    scenario: str
    seed: int
    profile: str
    divergences: int = 0
    #: Answers that went back in time, and answers older than the staleness bound.
    monotonic: int = 0
    stale_reads: int = 0
    #: Whole-collection reloads after start-up, summed over replicas.
    full_reloads: int = 0
    reads: int = 0
    resyncs: int = 0
    max_lag_s: float | None = None
    converge_s: float | None = None
    duration_s: float = 0.0
    violations: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    workdir: str = ""

    @property
    def ok(self) -> bool:
        """No divergence, no monotonic violation, no stale read and no broken invariant."""
        return (
            self.divergences == 0
            and self.monotonic == 0
            and self.stale_reads == 0
            and not self.violations
        )

    def describe(self) -> str:
        """Everything a person needs to start debugging a failed run."""
        lines = [
            f"{self.scenario} (seed {self.seed}, {self.profile}): "
            f"{'ok' if self.ok else 'FAILED'}; divergences {self.divergences}; "
            f"monotonic violations {self.monotonic}; stale reads {self.stale_reads} "
            f"(of {self.reads} reads); full reloads {self.full_reloads}; logs in {self.workdir}"
        ]
        lines.extend(f"  - {v}" for v in self.violations)
        if self.notes:
            lines.append("  notes: " + ", ".join(f"{k}={v}" for k, v in sorted(self.notes.items())))
        return "\n".join(lines)


@dataclass
class Summary:
    """Every run of one scenario, folded into one table row."""

    scenario: str
    runs: int = 0
    failed: int = 0
    divergences: int = 0
    monotonic: int = 0
    stale_reads: int = 0
    full_reloads: int = 0
    resyncs: int = 0
    max_lag_s: float | None = None
    converge_s: float | None = None

    def add(self, result: RunResult) -> None:
        """Fold one run in (maxima for lag and convergence time)."""
        self.runs += 1
        self.failed += not result.ok
        self.divergences += result.divergences
        self.monotonic += result.monotonic
        self.stale_reads += result.stale_reads
        self.full_reloads += result.full_reloads
        self.resyncs += result.resyncs
        self.max_lag_s = _max(self.max_lag_s, result.max_lag_s)
        self.converge_s = _max(self.converge_s, result.converge_s)


def _max(a: float | None, b: float | None) -> float | None:
    values = [v for v in (a, b) if v is not None]
    return max(values) if values else None


def summarize(results: Iterable[RunResult]) -> list[Summary]:
    """One :class:`Summary` per scenario, in first-seen order."""
    rows: dict[str, Summary] = {}
    for result in results:
        rows.setdefault(result.scenario, Summary(result.scenario)).add(result)
    return list(rows.values())


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


#: Columns of the table ``python -m tests.chaos`` prints.
HEADER: Final = (
    "scenario",
    "runs",
    "divergences",
    "monotonic",
    "stale reads",
    "full reloads",
    "resyncs",
    "max lag",
    "converge",
    "result",
)


def print_table(results: list[RunResult], out: TextIO) -> None:
    """The per-scenario table (see :data:`HEADER`), one row per scenario, then a legend."""
    header = HEADER
    rows = [
        (
            s.scenario,
            str(s.runs),
            str(s.divergences),
            str(s.monotonic),
            str(s.stale_reads),
            str(s.full_reloads),
            str(s.resyncs),
            _seconds(s.max_lag_s),
            _seconds(s.converge_s),
            "ok" if s.failed == 0 else f"FAILED {s.failed}/{s.runs}",
        )
        for s in summarize(results)
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out.write(line(header) + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in rows:
        out.write(line(row) + "\n")
    out.write(
        "\ndivergences: replicas not equal to the collection at the end; monotonic: answers "
        "older than one the same replica gave before (or a deleted config served again); "
        "stale reads: answers older than a write acknowledged more than SCC_MAX_STALENESS_S "
        "+ 1 s before the read; full reloads: whole-collection reloads after start-up (all "
        "replicas); resyncs: by reason, summed; max lag: a writer's acknowledged write -> its "
        "message on the channel (includes outages); converge: writes stopped -> every replica "
        "equal to the collection.\n"
    )
