"""The conformance selection: classification, JUnit counting and the table (no network)."""

from __future__ import annotations

from pathlib import Path

from tests.conformance.selection import SELECTION, load, record, table

CS = "test/asynchronous/test_change_stream.py"

SELECTION_TEXT = f"""
[[suite]]
name = "streams"
kind = "required"
file = "{CS}"
classes = ["TestA*"]

[[suite]]
name = "images"
kind = "optional"
file = "{CS}"
classes = ["TestImages"]
tests = ["TestAlpha::test_big"]

[[exclude]]
file = "{CS}"
classes = ["TestNsType"]
reason = "needs 8.1"
"""

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite>
<testcase classname="test.asynchronous.test_change_stream.TestAlpha" name="test_ok"/>
<testcase classname="test.asynchronous.test_change_stream.TestAlpha" name="test_sync">
  <skipped message="This test only works with the synchronous API"/></testcase>
<testcase classname="test.asynchronous.test_change_stream.TestAlpha" name="test_bad">
  <failure message="AssertionError: 40324 != 2&#10;more"/></testcase>
<testcase classname="test.asynchronous.test_change_stream.TestAlpha" name="test_big">
  <error message="OperationFailure: not supported"/></testcase>
<testcase classname="test.asynchronous.test_change_stream.TestNsType" name="test_x"/>
</testsuite></testsuites>
"""


def test_every_collected_class_must_be_selected_or_excluded(tmp_path: Path) -> None:
    """A class matching no suite and no exclusion is reported as unclassified."""
    path = tmp_path / "selection.toml"
    path.write_text(SELECTION_TEXT)
    selection = load(path)
    collected = [
        (CS, "TestAlpha", "test_ok"),
        (CS, "TestAlpha", "test_big"),
        (CS, "TestNsType", "test_x"),
        (CS, "TestForgotten", "test_y"),
    ]
    assert selection.unclassified(collected) == [f"{CS}::TestForgotten"]
    assert selection.node_ids(collected) == [
        f"{CS}::TestAlpha::test_ok",
        f"{CS}::TestAlpha::test_big",
    ]
    assert selection.suite_for(CS, "TestAlpha", "test_big").name == "images"  # type: ignore[union-attr]


def test_junit_report_is_counted_into_suites_and_the_table(tmp_path: Path) -> None:
    """Passes, PyMongo's skip reasons and failures land in their suites' rows."""
    (tmp_path / "selection.toml").write_text(SELECTION_TEXT)
    (tmp_path / "junit.xml").write_text(JUNIT)
    selection = load(tmp_path / "selection.toml")
    record(selection, tmp_path / "junit.xml")
    streams, images = selection.suites
    assert (streams.passed, sum(streams.skipped.values()), len(streams.failed)) == (1, 1, 1)
    assert streams.skipped == {"This test only works with the synchronous API": 1}
    assert streams.failed == ["TestAlpha::test_bad: AssertionError: 40324 != 2"]
    assert (images.total, len(images.failed)) == (1, 1)
    rows = table(selection).splitlines()
    assert rows[2] == "| streams | required | 3 | 2 | 1 | 1 | 1 |"
    assert rows[3] == "| images | optional | 1 | 1 | 0 | 0 | 1 |"


def test_the_committed_selection_gives_a_reason_for_every_exclusion() -> None:
    """selection.toml parses, names required suites, and every exclusion has a reason."""
    selection = load(SELECTION)
    assert {s.kind for s in selection.suites} == {"required", "bonus", "optional"}
    assert all(reason.strip() for _, _, reason in selection.excludes)
