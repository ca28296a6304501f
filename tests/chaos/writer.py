"""The writer: random creates, updates, replaces, deletes and key changes through PyMongo.

Why it exists: every scenario injects its fault *while the collection changes*, because a
failure that only costs messages when nothing is written proves nothing. The writer runs
in its own named thread with its own ``MongoClient`` and writes in bursts (a few ops back
to back, then a pause) so a fault lands mid-burst.

What it keeps, for the invariants checked later:

its :class:`~tests.chaos.ledger.Ledger` of every write (which keys, which ``rev``, when
acknowledged, which failed and so may or may not have been applied).

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

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError, PyMongoError

from shared.clients import MONGO_DOCUMENT_OPTIONS
from tests.chaos.configs import (
    BIG_PADDING,
    KEY_FIELD,
    MARKER_KEY,
    PATTERNS,
    SHARED_CONTAINERS,
    key_of,
    now_ms,
    pinned_config,
    pinned_container,
    pinned_key,
    random_config,
    with_key,
)
from tests.chaos.ledger import Ledger, Write

__all__ = [
    "BIG_PADDING",
    "KEY_FIELD",
    "MARKER_KEY",
    "PATTERNS",
    "SHARED_CONTAINERS",
    "Write",
    "Writer",
    "key_of",
    "now_ms",
    "pinned_config",
    "pinned_container",
    "pinned_key",
    "random_config",
    "with_key",
]

log = structlog.get_logger("tests.chaos.writer")


class Writer(Ledger):
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
        key_field: str = KEY_FIELD,
    ) -> None:
        super().__init__()
        self._client: MongoClient[dict[str, Any]] = MongoClient(
            uri, serverSelectionTimeoutMS=5000, **MONGO_DOCUMENT_OPTIONS
        )
        self._coll: Collection[dict[str, Any]] = self._client[database][collection]
        self._rng = random.Random(seed)
        self._key_space = key_space
        self._ops_per_s = ops_per_s
        self._max_ops = max_ops
        self.key_field = key_field
        #: Cumulative thresholds of create / update / replace / delete / rekey.
        self._mix = (0.28, 0.66, 0.78, 0.96) if deletes else (0.25, 0.70, 0.85, 0.85)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._present: set[str] = set()
        self._fresh = 0
        self._held_since: float | None = None
        self._attempt: tuple[str, ...] = ()
        self._attempt_rev = 0
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
            self._held_since = time.time()
            try:
                yield
            finally:
                self._held_since = None

    def forget_model(self) -> None:
        """The collection was replaced: nothing written before exists any more.

        Called inside or right after :meth:`hold`; every key in the history gets a
        delete that started when the hold began.
        """
        started = self._held_since or time.time()
        with self._lock:
            self._present.clear()
        for key in sorted({w.key for w in self.writes()}):
            self.record_delete(key, started=started)

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()

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
        started = time.time()
        self._begin(0)
        try:
            getattr(self, f"_{op}")(started)
            self.ops[op] += 1
        except PyMongoError as e:
            self.errors[type(e).__name__] += 1
            self._uncertain(op, started)
            log.debug("write failed", op=op, error=type(e).__name__)

    def _uncertain(self, op: str, started: float) -> None:
        # The write may have been applied: a delete (or the old key of a rekey) may be
        # gone, an upsert may carry a rev nobody acknowledged; the checks allow both.
        for key in self._attempt:
            if op in ("delete", "rekey"):
                self.record_delete(key, started=started, certain=False)
            else:
                self.record_write(key, self._attempt_rev, started=started, certain=False)

    def _absent_key(self) -> str:
        for _ in range(20):
            key = f"chaos-{self._rng.randrange(self._key_space):05d}"
            if key not in self._present:
                return key
        self._fresh += 1
        return f"chaos-x{self._fresh:05d}"

    def _begin(self, rev: int, *keys: str) -> None:
        self._attempt_rev, self._attempt = rev, keys

    def _create(self, started: float) -> None:
        key = self._absent_key()
        rev = self.next_rev()
        self._begin(rev, key)
        try:
            self._coll.insert_one(random_config(key, rev, self._rng, self.key_field))
        except DuplicateKeyError:
            self._present.add(key)
            return
        self._present.add(key)
        self.record_write(key, rev, started=started)

    def _pick(self) -> str:
        return self._rng.choice(sorted(self._present))

    def _update(self, started: float) -> None:
        key, rev = self._pick(), self.next_rev()
        self._begin(rev, key)
        change: dict[str, Any] = {"rev": rev, "updated_at": now_ms()}
        if self._rng.random() < 0.3:
            change["ingestion.landing_container"] = self._rng.choice(SHARED_CONTAINERS)
        if self._rng.random() < 0.3:
            change["enabled"] = self._rng.random() > 0.2
        update: dict[str, Any] = {"$set": change}
        if self._rng.random() < 0.2:
            update["$unset"] = {"owner": ""}
        if self._coll.update_one({self.key_field: key}, update).matched_count:
            self.record_write(key, rev, started=started)
        else:
            self._present.discard(key)

    def _replace(self, started: float) -> None:
        key, rev = self._pick(), self.next_rev()
        self._begin(rev, key)
        doc = random_config(key, rev, self._rng, self.key_field)
        if self._coll.replace_one({self.key_field: key}, doc).matched_count:
            self.record_write(key, rev, started=started)
        else:
            self._present.discard(key)

    def _delete(self, started: float) -> None:
        key = self._pick()
        self._begin(0, key)
        self._coll.delete_one({self.key_field: key})
        self._present.discard(key)
        self.record_delete(key, started=started)

    def _rekey(self, started: float) -> None:
        old, new, rev = self._pick(), self._absent_key(), self.next_rev()
        self._begin(rev, old)
        try:
            result = self._coll.update_one(
                {self.key_field: old}, {"$set": {self.key_field: new, "rev": rev}}
            )
        except DuplicateKeyError:
            self._present.add(new)
            return
        self._present.discard(old)
        if result.matched_count:
            self.record_delete(old, started=started)
            self._present.add(new)
            self.record_write(new, rev, started=started)
        else:
            self.ever_written.add(old)
