"""scc inspect shows each watcher's poison-document count and names the last one."""

from __future__ import annotations

import io

from rich.console import Console

from scc.judging import judge_watcher
from scc.rendering import watchers_table
from shared.status import WatcherStatus
from tests.unit.scc.samples import NOW, RULES


def test_a_watcher_s_poison_documents_are_in_the_snapshot_and_the_table() -> None:
    """The hash's poison count and last poison reach the judged watcher and its table row."""
    status = WatcherStatus.from_hash(
        WatcherStatus(
            instance_id="w-1",
            role="leader",
            updated_at=NOW,
            poison_documents=3,
            last_poison="undecodable: _id=42: InvalidBSON",
        ).to_hash()
    )
    watcher, _ = judge_watcher(status, instance_id="w-1", leader_id="w-1", now=NOW, rules=RULES)
    assert (watcher.poison_documents, watcher.last_poison) == (
        3,
        "undecodable: _id=42: InvalidBSON",
    )
    buffer = io.StringIO()
    Console(file=buffer, width=400, highlight=False, emoji=False).print(watchers_table([watcher]))
    assert "3 (last undecodable: _id=42: InvalidBSON)" in buffer.getvalue()
