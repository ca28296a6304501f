"""Scenario 10: documents production will produce that the system must carry or name, never die on.

Written through real PyMongo to the wire double while the writer runs, each with its own
key and a ``rev``:

* a date in year 10000 (legal BSON, easy to write from JavaScript or Java; PyMongo only
  reads it back with ``DATETIME_AUTO``, as ``DatetimeMS``);
* ``_id``\\ s of type int64, Decimal128, double and an embedded document (identity must
  follow MongoDB's comparison rules, whatever type a reload or a message decodes);
* a document nested 90 levels deep (MongoDB allows 100);
* a 15 MiB document (under MongoDB's 16 MiB limit; far over the message size, so it
  travels key-only and is refetched).

Steps: create them all; make every replica reload (``CLIENT KILL TYPE pubsub``) so they
hold the documents *as a reload decoded them*; update each; delete each; create a second
generation (new ``_id``\\ s of the same types) and update it once more, which stays for the
final digest. Its own invariants: no watcher or replica dies or logs a traceback (shared
checks), every replica answers each probe in its final version once the staleness bound
has passed, and the shared checks
judge every answer on the way (the 15 MiB one is left to the digest: reading it a hundred
times a second would be a benchmark, not a check).
"""

from __future__ import annotations

import time
from typing import Any

from bson import Decimal128, Int64
from bson.datetime_ms import DatetimeMS

from tests.chaos.rig import Rig

NAME = "poison-documents"
TITLE = "10. year-10000 dates, int64/Decimal128/double/document _ids, deep and 15 MiB documents"
#: Milliseconds since the epoch of 10000-01-01T00:00:00Z.
YEAR_10000_MS = 253_402_300_800_000
DEPTH = 90
BIG_BYTES = 15 * 1024 * 1024
BIG_KEY = "poison-big"
#: Time for a change to reach every replica before the next step (a wait, not a check).
STEP_S = 1.0


def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"leaf": depth}
    for level in range(depth - 1):
        doc = {f"l{level}": doc}
    return doc


def _probes(generation: int) -> dict[str, dict[str, Any]]:
    """Key → document body (with its ``_id`` where the type matters) for one generation."""
    g = generation
    return {
        "poison-date": {"valid_until": DatetimeMS(YEAR_10000_MS + g * 86_400_000)},
        "poison-int64": {"_id": Int64(2**40 + g)},
        "poison-decimal": {"_id": Decimal128(f"12345.{g}5")},
        "poison-double": {"_id": 4.25 + g},
        "poison-embedded": {"_id": {"tenant": "t1", "n": g}},
        "poison-nested": {"deep": _nested(DEPTH)},
        BIG_KEY: {"blob": "x" * BIG_BYTES},
    }


def run(rig: Rig) -> None:
    """Create, reload, update, delete, create again (module docstring)."""
    assert rig.writer is not None
    rig.unread_keys.add(BIG_KEY)
    time.sleep(rig.profile.burst_s)
    first = _probes(1)
    for key, body in first.items():
        rig.write_probe(key, body)
    time.sleep(STEP_S)
    killed = rig.redis.client_kill_filter(_type="pubsub")
    rig.note("pubsub_connections_killed", killed)
    time.sleep(STEP_S)
    for key in first:
        rig.write_probe(key, {"touched": True})
    time.sleep(STEP_S)
    for key in first:
        started = time.time()
        rig.collection.delete_one({rig.key_field: key})
        rig.writer.record_delete(key, started=started)
    time.sleep(STEP_S)
    final: dict[str, int] = {}
    for key, body in _probes(2).items():
        rig.write_probe(key, body)
        final[key] = rig.write_probe(key, {"touched": 2})
    time.sleep(max(rig.profile.burst_s + STEP_S, rig.staleness_bound_s))  # the bound holds
    _check_final(rig, final)


def _check_final(rig: Rig, final: dict[str, int]) -> None:
    for name, url in rig.replica_urls().items():
        for key, rev in final.items():
            response = rig.http.get(f"{url}/configs/{key}", timeout=30)
            got = response.json().get("rev") if response.status_code == 200 else None
            rig.check(
                got == rev,
                f"{name} answers {key} with {response.status_code} rev {got}, "
                f"MongoDB has rev {rev}",
            )
