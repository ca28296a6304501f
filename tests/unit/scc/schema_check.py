"""Validate a document against ``scc/inspect.schema.json`` without new dependencies.

``jsonschema`` is not a dependency of this project, so this is a small validator for the
keywords the schema uses (``test_schema.py`` fails if the schema starts using another
one, so nothing is silently ignored). When ``jsonschema`` happens to be installed, it
validates too.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import scc

SCHEMA_PATH = Path(scc.__file__).parent / "inspect.schema.json"
#: Keywords that constrain a document and that :func:`errors` implements.
CHECKED = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "enum", "const",
     "minimum", "$ref"}
)  # fmt: skip
#: Keywords that only annotate.
ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description"})

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "null": lambda v: v is None,
}


def load_schema() -> dict[str, Any]:
    """The shipped schema."""
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return schema


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/$defs/"), ref
    node: dict[str, Any] = root["$defs"][ref.removeprefix("#/$defs/")]
    return node


def errors(doc: Any, schema: dict[str, Any], root: dict[str, Any], path: str = "$") -> list[str]:
    """Every violation of ``schema`` by ``doc``, as ``path: what`` lines."""
    if "$ref" in schema:
        return errors(doc, _resolve(root, schema["$ref"]), root, path)
    if "type" in schema:
        allowed = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        if not any(_TYPES[t](doc) for t in allowed):
            return [f"{path}: {doc!r:.60} is not of type {allowed}"]
    found = _scalar_errors(doc, schema, path)
    if isinstance(doc, dict):
        found += _object_errors(doc, schema, root, path)
    if isinstance(doc, list) and "items" in schema:
        for n, item in enumerate(doc):
            found += errors(item, schema["items"], root, f"{path}[{n}]")
    return found


def _scalar_errors(doc: Any, schema: dict[str, Any], path: str) -> list[str]:
    found: list[str] = []
    if "const" in schema and doc != schema["const"]:
        found.append(f"{path}: {doc!r} != const {schema['const']!r}")
    if "enum" in schema and doc not in schema["enum"]:
        found.append(f"{path}: {doc!r} not in {schema['enum']}")
    if "minimum" in schema and _TYPES["number"](doc) and doc < schema["minimum"]:
        found.append(f"{path}: {doc} < minimum {schema['minimum']}")
    return found


def _object_errors(
    doc: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], path: str
) -> list[str]:
    props = schema.get("properties", {})
    found = [f"{path}: missing {k!r}" for k in schema.get("required", []) if k not in doc]
    extra = schema.get("additionalProperties", True)
    for key, value in doc.items():
        if key in props:
            found += errors(value, props[key], root, f"{path}.{key}")
        elif extra is False:
            found.append(f"{path}: unexpected property {key!r}")
        elif isinstance(extra, dict):
            found += errors(value, extra, root, f"{path}.{key}")
    return found


def validate(doc: Any, ref: str | None = None) -> None:
    """Assert ``doc`` is valid against the schema (or its ``$defs`` entry ``ref``)."""
    root = load_schema()
    schema = root if ref is None else {"$ref": ref}
    problems = errors(doc, schema, root)
    assert not problems, "\n".join(problems)
    try:
        jsonschema: Any = importlib.import_module("jsonschema")
    except ImportError:
        return
    full = root if ref is None else {"$defs": root["$defs"], "$ref": ref}
    jsonschema.Draft202012Validator(full).validate(doc)
