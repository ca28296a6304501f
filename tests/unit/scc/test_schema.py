"""scc/inspect.schema.json is complete, strict, versioned and matches the snapshot tree."""

from __future__ import annotations

import dataclasses
from typing import Any

from scc import snapshot as snap
from tests.unit.scc.schema_check import ANNOTATIONS, CHECKED, errors, load_schema


def _walk(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node]
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for child in value.values():
                    found += _walk(child)
            elif isinstance(value, dict | list):
                found += _walk(value)
        return found
    if isinstance(node, list):
        return [n for item in node for n in _walk(item)]
    return []


def test_schema_uses_only_keywords_the_test_validator_checks() -> None:
    """Every keyword is either checked by schema_check or a pure annotation."""
    for node in _walk(load_schema()):
        unknown = set(node) - CHECKED - ANNOTATIONS
        assert not unknown, unknown


def test_every_object_is_closed_and_fully_required() -> None:
    """Objects forbid unknown fields and require every field they list (a stable shape)."""
    for node in _walk(load_schema()):
        if "properties" in node:
            assert node.get("additionalProperties") is False
            assert sorted(node["required"]) == sorted(node["properties"])


def test_schema_version_is_pinned_to_the_code() -> None:
    """The schema's schema_version const is the one the code writes."""
    assert load_schema()["properties"]["schema_version"]["const"] == snap.SCHEMA_VERSION


def test_schema_fields_match_the_dataclasses() -> None:
    """Each dataclass of the tree has exactly the properties of its schema definition."""
    schema = load_schema()
    pairs = {
        snap.Snapshot: schema,
        snap.Rules: schema["$defs"]["rules"],
        snap.Leader: schema["$defs"]["leader"],
        snap.Resume: schema["$defs"]["resume"],
        snap.Watcher: schema["$defs"]["watcher"],
        snap.Replica: schema["$defs"]["replica"],
        snap.Channel: schema["$defs"]["channel"],
        snap.DeadLetter: schema["$defs"]["dead_letter"],
        snap.DeadLetters: schema["$defs"]["dlq"],
        snap.Accepted: schema["$defs"]["accepted"],
        snap.Problem: schema["$defs"]["problem"],
        snap.RedisPrimary: schema["$defs"]["redis"],
    }
    for cls, node in pairs.items():
        names = [f.name for f in dataclasses.fields(cls)]
        assert sorted(names) == sorted(node["properties"]), cls.__name__


def test_mark_vocabulary_matches_the_code() -> None:
    """The marks the schema allows are the ones scc.snapshot declares."""
    defs = load_schema()["$defs"]
    assert defs["replica"]["properties"]["marks"]["items"]["enum"] == list(snap.REPLICA_MARKS)
    assert defs["watcher"]["properties"]["marks"]["items"]["enum"] == list(snap.WATCHER_MARKS)
    assert defs["problem"]["properties"]["mark"]["enum"] == list(snap.PROBLEM_MARKS)


def test_validator_rejects_what_it_should() -> None:
    """The hand-written validator catches a missing field, an extra one and a wrong type."""
    root = load_schema()
    leader = {"$ref": "#/$defs/leader"}
    assert errors({"instance_id": "w", "lease_ms_left": 5}, leader, root) == []
    assert errors(None, leader, root) == []
    assert errors({"instance_id": "w"}, leader, root) == ["$: missing 'lease_ms_left'"]
    assert errors({"instance_id": 1, "lease_ms_left": None, "x": 1}, leader, root) == [
        "$.instance_id: 1 is not of type ['string']",
        "$: unexpected property 'x'",
    ]
