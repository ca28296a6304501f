"""The conformance selection (``selection.toml``) and the table of results it is judged by.

Why: the MongoDB wire double is only as trustworthy as the driver tests it passes, so which
of PyMongo's own tests count, and why the others do not, is data in one reviewed file. This
module keeps its invariant: every test class collected from a selected file is either in a
suite or excluded with a reason (an unclassified class is an error, never silently out of
scope), and results come from PyMongo's own JUnit report, skips with PyMongo's own reasons.
"""

from __future__ import annotations

import fnmatch
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

SELECTION = Path(__file__).with_name("selection.toml")
KINDS = ("required", "bonus", "optional")


@dataclass
class Suite:
    """A named group of test classes (and single tests) of one file of the sdist."""

    name: str
    kind: str
    file: str
    classes: list[str]
    tests: list[str] = field(default_factory=list)
    passed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.passed + sum(self.skipped.values()) + len(self.failed)


@dataclass
class Selection:
    suites: list[Suite]
    excludes: list[tuple[str, list[str], str]]  # (file, class patterns, reason)

    @property
    def files(self) -> list[str]:
        return sorted({s.file for s in self.suites})

    def suite_for(self, file: str, cls: str, name: str) -> Suite | None:
        """The suite a test belongs to: a suite naming it alone wins over its class's suite."""
        for suite in self.suites:
            if suite.file == file and f"{cls}::{name}" in suite.tests:
                return suite
        for suite in self.suites:
            if suite.file == file and any(fnmatch.fnmatchcase(cls, p) for p in suite.classes):
                return suite
        return None

    def excluded(self, file: str, cls: str) -> str | None:
        for ex_file, patterns, reason in self.excludes:
            if ex_file == file and any(fnmatch.fnmatchcase(cls, p) for p in patterns):
                return reason
        return None

    def node_ids(self, collected: list[tuple[str, str, str]]) -> list[str]:
        """pytest node ids of every selected test among ``collected`` (file, class, name)."""
        return [f"{f}::{c}::{n}" for f, c, n in collected if self.suite_for(f, c, n)]

    def unclassified(self, collected: list[tuple[str, str, str]]) -> list[str]:
        """Collected classes that are neither selected nor excluded (must be empty)."""
        out = {
            f"{f}::{c}"
            for f, c, n in collected
            if self.suite_for(f, c, n) is None and self.excluded(f, c) is None
        }
        return sorted(out)


def load(path: Path = SELECTION) -> Selection:
    """Parse ``selection.toml``; a malformed entry is a ``ValueError`` naming it."""
    data = tomllib.loads(path.read_text())
    suites = []
    for entry in data.get("suite", []):
        if entry.get("kind") not in KINDS or not entry.get("file") or not entry.get("name"):
            raise ValueError(f"{path}: suite entry {entry!r} needs name, file and kind {KINDS}")
        suites.append(
            Suite(
                entry["name"],
                entry["kind"],
                entry["file"],
                list(entry.get("classes", [])),
                list(entry.get("tests", [])),
            )
        )
    excludes = []
    for entry in data.get("exclude", []):
        if not entry.get("reason") or not entry.get("classes") or not entry.get("file"):
            raise ValueError(f"{path}: exclude entry {entry!r} needs file, classes and a reason")
        excludes.append((entry["file"], list(entry["classes"]), str(entry["reason"])))
    return Selection(suites, excludes)


def _file_of(classname: str) -> tuple[str, str]:
    """``test.asynchronous.test_x.TestY`` → (``test/asynchronous/test_x.py``, ``TestY``)."""
    module, _, cls = classname.rpartition(".")
    return module.replace(".", "/") + ".py", cls


def record(selection: Selection, junit: Path) -> None:
    """Count each test case of a JUnit report into its suite."""
    for case in ET.parse(junit).iter("testcase"):
        file, cls = _file_of(case.get("classname", ""))
        name = case.get("name", "")
        suite = selection.suite_for(file, cls, name)
        if suite is None:
            continue
        outcome = [child for child in case if child.tag in ("failure", "error", "skipped")]
        if not outcome:
            suite.passed += 1
        elif outcome[0].tag == "skipped":
            reason = outcome[0].get("message", "") or "skipped"
            suite.skipped[reason.removeprefix("Skipped: ")[:90]] += 1
        else:
            message = (outcome[0].get("message", "") or "").splitlines()[:1]
            suite.failed.append(f"{cls}::{name}: {' '.join(message)[:150]}")


def table(selection: Selection) -> str:
    """The result table: suite, selected, in scope (selected less PyMongo's own skips),
    passed, skipped, failed; then each skip reason with its count and each failure."""
    lines = [
        "| suite | kind | selected | in scope | passed | skipped | failed |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for suite in selection.suites:
        skipped = sum(suite.skipped.values())
        lines.append(
            f"| {suite.name} | {suite.kind} | {suite.total} | {suite.total - skipped} "
            f"| {suite.passed} "
            f"| {skipped} | {len(suite.failed)} |"
        )
    details = []
    for suite in selection.suites:
        for reason, count in suite.skipped.most_common():
            details.append(f"  skipped in {suite.name} ({count}): {reason}")
        for failure in suite.failed:
            details.append(f"  FAILED in {suite.name}: {failure}")
    return "\n".join(lines + ([""] + details if details else []))
