"""What every benchmark shares: the run context, timing loops, statistics, JSON/PNG writers.

Invariant: a benchmark reports *ratios against a baseline measured in the same run*,
never a bare absolute time as its verdict; absolute numbers are written alongside as
context. Timing uses ``time.perf_counter_ns`` (CLOCK_MONOTONIC on Linux, which is
system-wide, so timestamps taken in different processes of this machine compare
directly). Plots are drawn with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson

Mode = Literal["quick", "default", "full"]
_T = TypeVar("_T")

#: Field that identifies a config in the generated documents (the system's default).
KEY_FIELD = "source_id"


class BenchError(RuntimeError):
    """A benchmark could not run (a process did not start, a subject misbehaved)."""


# --------------------------------------------------------------------------- context


@dataclass
class Context:
    """How one ``python -m bench`` run is sized and where it writes."""

    mode: Mode
    out_dir: Path
    started: float = field(default_factory=time.monotonic)
    #: Process logs of this run (removed after a clean run, kept and named after a failure).
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="scc-bench-")))

    @property
    def quick(self) -> bool:
        """True in ``--quick`` mode (tiny sizes, proves the benchmarks still run)."""
        return self.mode == "quick"

    def pick(self, *, quick: _T, default: _T, full: _T | None = None) -> _T:
        """The size for this mode (``full`` falls back to ``default``)."""
        if self.mode == "quick":
            return quick
        if self.mode == "full" and full is not None:
            return full
        return default

    def logs(self, name: str) -> Path:
        """A directory for the process logs of one benchmark."""
        path = self.scratch / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log(self, message: str) -> None:
        """A progress line on stderr, prefixed with the time since the run started."""
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:7.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- results


@dataclass
class Row:
    """One line of the summary table."""

    benchmark: str
    ours: str
    baseline: str
    ratio: str
    target: str
    met: bool | None  # None: no target for this line (context only)
    note: str = ""

    @property
    def met_text(self) -> str:
        """``yes`` / ``NO`` / ``-`` for the table."""
        return "-" if self.met is None else ("yes" if self.met else "NO")


@dataclass
class Outcome:
    """What one benchmark produced: table rows, the JSON document, the files it wrote."""

    name: str
    rows: list[Row]
    data: dict[str, Any]
    files: list[Path] = field(default_factory=list)


def write_json(path: Path, document: dict[str, Any]) -> Path:
    """Write ``document`` as indented JSON (with machine facts for later comparison)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    envelope = {"machine": machine_facts(), **document}
    path.write_bytes(orjson.dumps(envelope, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return path


def machine_facts() -> dict[str, Any]:
    """CPU count, load and Python version: what a reader needs to judge the numbers."""
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "loadavg_1m_5m_15m": [round(x, 2) for x in load],
        "python": sys.version.split()[0],
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def format_table(rows: Sequence[Row]) -> str:
    """The summary table as fixed-width text."""
    header = ("benchmark", "ours", "baseline", "ratio", "target", "met?")
    body = [(r.benchmark, r.ours, r.baseline, r.ratio, r.target, r.met_text) for r in rows]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(b) for b in body)])


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def describe(values: Sequence[float]) -> dict[str, float]:
    """n, median, p99, mean, min, max of ``values``."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


def ratio(ours: float, baseline: float) -> float:
    """``ours / baseline`` (inf when the baseline is zero and ours is not)."""
    if baseline == 0:
        return 0.0 if ours == 0 else math.inf
    return ours / baseline


def fmt_ns(ns: float) -> str:
    """A duration in ns, printed in the most readable unit."""
    if math.isnan(ns):
        return "n/a"
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.2f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def fmt_ratio(value: float) -> str:
    """A ratio with sensible precision (``1.23x``, ``412x``)."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf"
    if value >= 100:
        return f"{value:,.0f}x"
    if value >= 10:
        return f"{value:.1f}x"
    return f"{value:.2f}x"


# --------------------------------------------------------------------------- timing


def time_batches(run_batch: Callable[[], object], per_batch: int, batches: int) -> list[float]:
    """ns per operation for each of ``batches`` calls of ``run_batch`` (``per_batch`` ops each).

    Timing one batch rather than one call keeps the clock's own cost (~50 ns) out of
    operations that take tens of nanoseconds; the distribution over batches still shows
    a median and a tail.
    """
    clock = time.perf_counter_ns
    out: list[float] = []
    for _ in range(batches):
        start = clock()
        run_batch()
        out.append((clock() - start) / per_batch)
    return out


async def time_batches_async(
    run_batch: Callable[[], Any], per_batch: int, batches: int
) -> list[float]:
    """:func:`time_batches` for a coroutine function ``run_batch``."""
    clock = time.perf_counter_ns
    out: list[float] = []
    for _ in range(batches):
        start = clock()
        await run_batch()
        out.append((clock() - start) / per_batch)
    return out


def batch_size_for(estimated_ns: float, *, target_ns: float = 200_000.0) -> int:
    """How many operations make a batch of about ``target_ns`` (at least 1)."""
    return max(1, int(target_ns / max(estimated_ns, 1.0)))


def interleave(rounds: int, steps: Iterable[Callable[[], None]]) -> None:
    """Run ``steps`` in turn ``rounds`` times, so drift hits every subject alike."""
    listed = list(steps)
    for _ in range(rounds):
        for step in listed:
            step()


# --------------------------------------------------------------------------- waiting


async def wait_until(
    predicate: Callable[[], bool], *, what: str, within_s: float, interval_s: float = 0.02
) -> None:
    """Poll ``predicate`` until it holds; :class:`BenchError` naming ``what`` after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise BenchError(f"{what}: not true after {within_s:.1f}s")
        await asyncio.sleep(interval_s)


def tail(path: Path, chars: int = 3000) -> str:
    """The last ``chars`` characters of a log file (for error messages)."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as e:
        return f"(cannot read {path}: {e})"


# --------------------------------------------------------------------------- documents


def make_config(i: int, *, size: int = 0, version: int = 0) -> dict[str, Any]:
    """A realistic source config; with ``size`` it is padded to about that many bytes."""
    doc: dict[str, Any] = {
        KEY_FIELD: f"src-{i:07d}",
        "name": f"Source {i}",
        "enabled": True,
        "owner": f"team-{i % 17}",
        "version": version,
        "ingestion": {
            "landing_container": f"landing-{i:07d}",
            "path_pattern": "incoming/*.csv",
            "format": "csv",
            "delimiter": ",",
        },
        "tags": ["bench", f"shard-{i % 8}"],
    }
    if size:
        base = len(orjson.dumps(doc))
        doc["padding"] = "x" * max(0, size - base - 16)
    return doc


def key_of(i: int) -> str:
    """The key :func:`make_config` gives config ``i``."""
    return f"src-{i:07d}"


# --------------------------------------------------------------------------- plots


def plot_lines(
    path: Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    logx: bool = False,
    logy: bool = False,
    hlines: dict[str, float] | None = None,
) -> Path:
    """A line plot of several series (x values, y values) to a PNG file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for label, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), marker="o", label=label)
    for label, y in (hlines or {}).items():
        ax.axhline(y, linestyle="--", linewidth=1, color="grey")
        ax.annotate(label, xy=(0.01, y), xycoords=("axes fraction", "data"), fontsize=8)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_cdf(
    path: Path,
    *,
    title: str,
    xlabel: str,
    series: Mapping[str, Sequence[float]],
    logx: bool = True,
) -> Path:
    """Empirical CDFs of latency samples (one curve per subject) to a PNG file."""
    curves: dict[str, tuple[Sequence[float], Sequence[float]]] = {}
    for label, values in series.items():
        ordered = sorted(values)
        n = len(ordered)
        curves[label] = (ordered, [(i + 1) / n for i in range(n)])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for label, (xs, ys) in curves.items():
        ax.step(list(xs), list(ys), where="post", label=label)
    ax.axhline(0.99, linestyle=":", color="grey", linewidth=1)
    if logx:
        ax.set_xscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of samples ≤ x")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def as_jsonable(obj: Any) -> Any:
    """Dataclasses and paths made JSON-friendly (for ``Outcome.data``)."""
    if hasattr(obj, "__dataclass_fields__"):
        return as_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): as_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [as_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
