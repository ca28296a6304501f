"""Tables name every problem, data never turns into markup, and --json is plain JSON."""

from __future__ import annotations

import io
import json

from rich.console import Console

from scc.rendering import age, render_inspect, when, write_json
from tests.unit.scc.samples import snapshot
from tests.unit.scc.schema_check import validate


def rendered(markup: str = "[bold red]not markup[/]") -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=200, highlight=False, emoji=False).print(
        render_inspect(snapshot(markup_in_data=markup))
    )
    return buffer.getvalue()


def test_inspect_view_names_every_marked_process() -> None:
    """Each problem appears with its subject and mark, and so does the verdict count."""
    text = rendered()
    for line in (
        "replica r-lag: LAGGING",
        "replica r-silent: SILENT",
        "watcher w-2: SILENT",
        "channel: SUBSCRIBERS",
        "4 problem(s):",
    ):
        assert line in text, line
    assert "★ w-1" in text and "lease left 4.2 s" in text


def test_data_that_looks_like_markup_is_printed_verbatim() -> None:
    """A dead-letter reason or error containing [bold] is shown as typed, not styled."""
    assert rendered().count("[bold red]not markup[/]") >= 2


def test_json_is_the_snapshot_valid_against_the_schema() -> None:
    """write_json emits the snapshot tree, which validates against inspect.schema.json."""
    buffer = io.StringIO()
    write_json(buffer, snapshot())
    text = buffer.getvalue()
    assert "\x1b[" not in text and text.endswith("\n")
    document = json.loads(text)
    validate(document)
    assert document["schema_version"] == 3
    assert document["dlq"]["newest"][0]["reason"] == "[bold red]not markup[/]"
    assert [r["marks"] for r in document["replicas"]] == [[], ["lagging"], ["silent"]]


def test_ages_read_naturally() -> None:
    """Ages are seconds below a minute, then minutes, hours and days; unknown is a dash."""
    assert [age(None), age(1.25), age(75), age(7500), age(200000)] == [
        "—", "1.2 s", "1 m 15 s", "2 h 05 m", "2 d 07 h"
    ]  # fmt: skip
    assert when(0.0) == "1970-01-01 00:00:00Z" and when(None) == "—"
