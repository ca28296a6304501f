"""Run PyMongo's own tests against the MongoDB wire double and print the table.

``python -m tests.conformance [--cache DIR] [--selection FILE]`` (what ``scripts/conformance.sh``
and ``make conformance`` run): fetches the sdist of the pymongo version pinned in
pyproject.toml once into ``.cache/conformance`` (``pip download --no-binary :all:``), starts
the double on a free port as its own process, runs the selected tests from the unpacked
sdist root (``DB_IP``/``DB_PORT``), and prints suite, selected, in scope, passed, skipped
(PyMongo's own reasons) and failed. Exit status 1 when a required test fails or a collected
class is neither selected nor excluded; optional and bonus suites never fail the run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from pathlib import Path

from .selection import SELECTION, Selection, load, record, table

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = ROOT / ".cache" / "conformance"
TEST_TIMEOUT_S = 60  # per test (pytest-timeout, a dev dependency); the slowest takes ~2 s


def pinned_pymongo() -> str:
    """The exact pymongo version pyproject.toml pins (``pymongo==X``)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for requirement in data["project"]["dependencies"]:
        match = re.fullmatch(r"pymongo==([\w.]+)", requirement.strip())
        if match:
            return match.group(1)
    raise SystemExit("conformance: pyproject.toml pins no pymongo==<version>")


def sdist_root(cache: Path, version: str) -> Path:
    """The unpacked sdist, downloaded and unpacked on first use."""
    root = cache / f"pymongo-{version}"
    if (root / "test" / "asynchronous" / "unified_format.py").is_file():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"pymongo-{version}.tar.gz"
    if not archive.is_file():
        print(f"conformance: downloading the pymongo=={version} sdist into {cache}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps"]
            + ["-d", str(cache), f"pymongo=={version}"],
            check=True,
        )
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: refuse links and paths outside
            tar.extractall(cache, filter="data")
        else:
            tar.extractall(cache)
    return root


def start_double() -> tuple[subprocess.Popen[str], int]:
    """The double as its own process (as the end-to-end tests start it) and its port."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.mongo_double", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.match(r"MONGO_DOUBLE_READY mongodb://[^:]+:(\d+)/", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"conformance: the double did not start (it said {line!r})")
    return proc, int(match.group(1))


def pytest(root: Path, port: int, args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DB_IP": "127.0.0.1", "DB_PORT": str(port)}
    env.pop("PYTHONPATH", None)  # the sdist's own pymongo/bson/test packages, from its root
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "log_cli=false"]
    command += [f"--timeout={TEST_TIMEOUT_S}"]  # a hung test fails instead of stalling the run
    return subprocess.run(command + args, cwd=root, env=env, text=True, capture_output=True)


def collect(selection: Selection, root: Path, port: int) -> list[tuple[str, str, str]]:
    """(file, class, test) of every test pytest collects from the selected files."""
    done = pytest(root, port, ["--collect-only", "-q", *selection.files])
    found = []
    for line in done.stdout.splitlines():
        parts = line.strip().split("::")
        if len(parts) == 3:
            found.append((parts[0], parts[1], parts[2]))
    if not found:
        raise SystemExit(f"conformance: nothing collected\n{done.stdout}\n{done.stderr}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.conformance", description=__doc__)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="sdist cache dir")
    parser.add_argument("--selection", type=Path, default=SELECTION, help="selection file")
    args = parser.parse_args(argv)
    started = time.monotonic()
    selection = load(args.selection)
    root = sdist_root(args.cache, pinned_pymongo())
    proc, port = start_double()
    try:
        collected = collect(selection, root, port)
        unclassified = selection.unclassified(collected)
        with tempfile.TemporaryDirectory() as tmp:
            junit = Path(tmp) / "junit.xml"
            done = pytest(root, port, [f"--junitxml={junit}", "-q", *selection.node_ids(collected)])
            if not junit.is_file():
                print(done.stdout[-4000:], done.stderr[-4000:], sep="\n")
                return 1
            record(selection, junit)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(table(selection))
    failed = [s for s in selection.suites if s.kind == "required" and s.failed]
    for cls in unclassified:
        print(f"conformance: {cls} is neither selected nor excluded in selection.toml")
    print(f"conformance: {time.monotonic() - started:.0f} s, pymongo {pinned_pymongo()}")
    return 1 if failed or unclassified else 0


if __name__ == "__main__":
    sys.exit(main())
