"""The documents the chaos writer and scenarios put in the collection, and where the key goes.

Why it exists: the writer, the rig (pinned configs, the settle marker), the digest and the
scenarios must build and read configs the same way, including with a dotted
``SCC_KEY_FIELD`` (``meta.sid``): :func:`with_key` stores a key under a dotted path and
:func:`key_of` reads it back, so one scenario can run the whole fleet on another key
field without any other module knowing.
"""

from __future__ import annotations

import datetime
import random
from typing import Any, Final

KEY_FIELD: Final = "source_id"
MARKER_KEY: Final = "chaos-marker"
#: Containers the churned configs share (with path patterns), so routing has to choose.
SHARED_CONTAINERS: Final = tuple(f"shared-{i}" for i in range(5))
PATTERNS: Final = (None, "", "incoming/*", "incoming/*.csv", "incoming/daily/*.csv", "*.json")
#: Padding that makes a message exceed SCC_MAX_MESSAGE_BYTES (sent key-only, refetched).
BIG_PADDING: Final = 5000


def key_of(doc: dict[str, Any], key_field: str) -> Any:
    """The value of the (possibly dotted) ``key_field`` in ``doc``, or None."""
    value: Any = doc
    for part in key_field.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def with_key(doc: dict[str, Any], key_field: str, key: str) -> dict[str, Any]:
    """``doc`` with ``key`` stored under the (possibly dotted) ``key_field``, first."""
    *parents, last = key_field.split(".")
    top: dict[str, Any] = {}
    node = top
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = key
    for name, value in doc.items():
        if name in top and isinstance(top[name], dict) and isinstance(value, dict):
            top[name] = {**top[name], **value}
        else:
            top[name] = value
    return top


def now_ms() -> datetime.datetime:
    """Naive UTC now at millisecond precision (what BSON stores and PyMongo returns)."""
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def pinned_key(i: int) -> str:
    """Key of the ``i``-th pinned config."""
    return f"pinned-{i:03d}"


def pinned_container(i: int) -> str:
    """Landing container of the ``i``-th pinned config (one config per container)."""
    return f"pinned-landing-{i:03d}"


def pinned_config(i: int, key_field: str = KEY_FIELD) -> dict[str, Any]:
    """A config the writer never touches: enabled, alone in its container, no pattern."""
    return with_key(_pinned_body(i), key_field, pinned_key(i))


def _pinned_body(i: int) -> dict[str, Any]:
    return {
        "rev": 0,
        "name": f"Pinned source {i}",
        "enabled": True,
        "ingestion": {"landing_container": pinned_container(i), "format": "csv"},
        "tags": ["pinned"],
    }


def random_config(
    key: str, rev: int, rng: random.Random, key_field: str = KEY_FIELD
) -> dict[str, Any]:
    """A realistic config with varied BSON types; sometimes too large for a message."""
    doc: dict[str, Any] = {
        "rev": rev,
        "name": f"Source {key} r{rev}",
        "enabled": rng.random() > 0.15,
        "owner": rng.choice(["ingest", "finance", "ops", None]),
        "ingestion": {
            "landing_container": rng.choice(SHARED_CONTAINERS),
            "format": rng.choice(["csv", "json", "parquet"]),
        },
        "limits": {"max_mb": round(rng.uniform(0.5, 500.0), 3), "retries": rng.randint(0, 9)},
        "tags": [f"t{rng.randint(0, 20)}" for _ in range(rng.randint(0, 4))],
        "updated_at": now_ms(),
        "big_counter": rng.randint(2**40, 2**62),
    }
    pattern = rng.choice(PATTERNS)
    if pattern is not None:
        doc["ingestion"]["path_pattern"] = pattern
    if rng.random() < 0.06:
        doc["padding"] = "p" * BIG_PADDING
    return with_key(doc, key_field, key)
