"""The writer: random creates, updates, replaces, deletes and key changes through PyMongo.

Why it exists: every scenario injects its fault *while the collection changes*, because a
failure that only costs messages when nothing is written proves nothing. The writer runs
in its own named thread with its own ``MongoClient`` and writes in bursts (a few ops back
to back, then a pause) so a fault lands mid-burst.

What it keeps, for the invariants checked later:

* ``ever_written`` -- every key it ever wrote, so the digest also asks replicas about
  keys that no longer exist (they must answer 404);
* ``written_at`` -- ``rev → wall time`` the write was acknowledged; every written
  document carries its ``rev``, so the channel observer can measure write → publish lag.

It never decides what the collection holds: a write that failed (a hung-up connection,
an injected error) may or may not have been applied, and the digest reads the truth
from MongoDB at the end. It only avoids creating two documents with one key (keys are
created with ``insert_one`` against a unique index, and :meth:`Writer.hold` lets a
scenario drop and recreate the collection between two operations).

Two mixes: the default one deletes; ``deletes=False`` only creates, updates, replaces
and changes keys. After a failover, a replayed delete whose key the new leader never
saw makes it publish a full ``resync``, which repairs everything and so hides other
replay bugs; the delete-free mix keeps those visible.
"""

from __future__ import annotations

import datetime
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import structlog
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

from shared.clients import MONGO_DOCUMENT_OPTIONS

log = structlog.get_logger("tests.chaos.writer")

KEY_FIELD: Final = "source_id"
MARKER_KEY: Final = "chaos-marker"
#: Containers the churned configs share (with path patterns), so routing has to choose.
SHARED_CONTAINERS: Final = tuple(f"shared-{i}" for i in range(5))
PATTERNS: Final = (None, "", "incoming/*", "incoming/*.csv", "incoming/daily/*.csv", "*.json")
#: Padding that makes a message exceed SCC_MAX_MESSAGE_BYTES (sent key-only, refetched).
BIG_PADDING: Final = 5000


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


def pinned_config(i: int) -> dict[str, Any]:
    """A config the writer never touches: enabled, alone in its container, no pattern."""
    return {
        KEY_FIELD: pinned_key(i),
        "rev": 0,
        "name": f"Pinned source {i}",
        "enabled": True,
        "ingestion": {"landing_container": pinned_container(i), "format": "csv"},
        "tags": ["pinned"],
    }


def random_config(key: str, rev: int, rng: random.Random) -> dict[str, Any]:
    """A realistic config with varied BSON types; sometimes too large for a message."""
    doc: dict[str, Any] = {
        KEY_FIELD: key,
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
    return doc


class Writer:
    """Random writes in bursts on a named thread; :meth:`start`, :meth:`stop`, :meth:`hold`."""

    def __init__(
        self,
        *,
        uri: str,
        database: str,
        collection: str,
        seed: int,
        key_space: int,
        ops_per_s: float,
        max_ops: int | None = None,
        deletes: bool = True,
    ) -> None:
        self._client: MongoClient[dict[str, Any]] = MongoClient(
            uri, serverSelectionTimeoutMS=5000, **MONGO_DOCUMENT_OPTIONS
        )
        self._coll: Collection[dict[str, Any]] = self._client[database][collection]
        self._rng = random.Random(seed)
        self._key_space = key_space
        self._ops_per_s = ops_per_s
        self._max_ops = max_ops
        #: Cumulative thresholds of create / update / replace / delete / rekey.
        self._mix = (0.28, 0.66, 0.78, 0.96) if deletes else (0.25, 0.70, 0.85, 0.85)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._present: set[str] = set()
        self._fresh = 0
        self._rev = 0
        self._rev_lock = threading.Lock()
        self.ever_written: set[str] = set()
        self.written_at: dict[int, float] = {}
        self.ops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        """Start writing on thread ``chaos-writer``."""
        self._thread = threading.Thread(target=self._run, name="chaos-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the operation in progress; wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            if self._thread.is_alive():
                raise RuntimeError("chaos writer did not stop within 30 s (MongoDB hung?)")
            self._thread = None

    def close(self) -> None:
        """Stop, then close the client."""
        self.stop()
        self._client.close()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """No write runs inside this block (a scenario drops the collection, say)."""
        with self._lock:
            yield

    def forget_model(self) -> None:
        """The collection was replaced: nothing the writer created exists any more."""
        with self._lock:
            self._present.clear()

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def next_rev(self) -> int:
        """A fresh revision number (also used by scenarios writing on their own)."""
        with self._rev_lock:
            self._rev += 1
            return self._rev

    def record_write(self, key: str, rev: int) -> None:
        """Note that ``key`` was written with ``rev`` just now (scenarios writing directly)."""
        self.ever_written.add(key)
        self.written_at[rev] = time.time()

    # --------------------------------------------------------------------- loop
    def _run(self) -> None:
        done = 0
        while not self._stop.is_set():
            burst = self._rng.randint(3, 25)
            for _ in range(burst):
                if self._stop.is_set() or (self._max_ops is not None and done >= self._max_ops):
                    return
                with self._lock:
                    self._one()
                done += 1
            self._stop.wait(burst / self._ops_per_s)

    def _one(self) -> None:
        roll = self._rng.random()
        create, update, replace, delete = self._mix
        if not self._present or roll < create:
            op = "create"
        elif roll < update:
            op = "update"
        elif roll < replace:
            op = "replace"
        elif roll < delete:
            op = "delete"
        else:
            op = "rekey"
        try:
            getattr(self, f"_{op}")()
            self.ops[op] += 1
        except PyMongoError as e:
            self.errors[type(e).__name__] += 1
            log.debug("write failed", op=op, error=type(e).__name__)

    def _absent_key(self) -> str:
        for _ in range(20):
            key = f"chaos-{self._rng.randrange(self._key_space):05d}"
            if key not in self._present:
                return key
        self._fresh += 1
        return f"chaos-x{self._fresh:05d}"

    def _create(self) -> None:
        key = self._absent_key()
        rev = self.next_rev()
        try:
            self._coll.insert_one(random_config(key, rev, self._rng))
        except DuplicateKeyError:
            self._present.add(key)
            return
        self._present.add(key)
        self.record_write(key, rev)

    def _pick(self) -> str:
        return self._rng.choice(sorted(self._present))

    def _update(self) -> None:
        key, rev = self._pick(), self.next_rev()
        change: dict[str, Any] = {"rev": rev, "updated_at": now_ms()}
        if self._rng.random() < 0.3:
            change["ingestion.landing_container"] = self._rng.choice(SHARED_CONTAINERS)
        if self._rng.random() < 0.3:
            change["enabled"] = self._rng.random() > 0.2
        update: dict[str, Any] = {"$set": change}
        if self._rng.random() < 0.2:
            update["$unset"] = {"owner": ""}
        if self._coll.update_one({KEY_FIELD: key}, update).matched_count:
            self.record_write(key, rev)
        else:
            self._present.discard(key)

    def _replace(self) -> None:
        key, rev = self._pick(), self.next_rev()
        result = self._coll.replace_one({KEY_FIELD: key}, random_config(key, rev, self._rng))
        if result.matched_count:
            self.record_write(key, rev)
        else:
            self._present.discard(key)

    def _delete(self) -> None:
        key = self._pick()
        self._coll.delete_one({KEY_FIELD: key})
        self._present.discard(key)
        self.ever_written.add(key)

    def _rekey(self) -> None:
        old, new, rev = self._pick(), self._absent_key(), self.next_rev()
        try:
            result = self._coll.update_one({KEY_FIELD: old}, {"$set": {KEY_FIELD: new, "rev": rev}})
        except DuplicateKeyError:
            self._present.add(new)
            return
        self._present.discard(old)
        self.ever_written.add(old)
        if result.matched_count:
            self._present.add(new)
            self.record_write(new, rev)
