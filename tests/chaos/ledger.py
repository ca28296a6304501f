"""The ledger of every write a chaos run made: what replicas' answers are judged against.

Why it exists: the invariants checked after a run need to know what was written, when,
and in which order, including by scenarios writing on their own:

* ``ever_written`` -- every key ever written, so the digest also asks replicas about
  keys that no longer exist (they must answer 404);
* ``written_at`` -- ``rev → wall time`` the write was acknowledged; every written
  document carries its ``rev``, so the channel observer can measure write → publish lag;
* ``history`` -- every write as a :class:`Write` (key, rev, upsert or delete, when it
  started and when it was acknowledged; a write that failed is kept as *uncertain*: it
  may or may not have been applied). Every write, deletes included, takes a fresh
  ``rev`` from one counter, so revs order the writes to a key; the consistency checks of
  :mod:`tests.chaos.consistency` judge what replicas answered against this ledger.

Thread-safe: the writer's thread and scenario threads record concurrently.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Write:
    """One write to one key: ``kind`` is ``upsert`` or ``delete``; wall-clock seconds.

    ``certain`` is False when the write raised (a hung-up connection, an injected error):
    MongoDB may or may not have applied it.
    """

    key: str
    rev: int
    kind: str
    started: float
    acked: float
    certain: bool = True


class Ledger:
    """Revisions and the record of writes (module docstring); the writer is one."""

    def __init__(self) -> None:
        self._rev = 0
        self._rev_lock = threading.Lock()
        self.ever_written: set[str] = set()
        self.written_at: dict[int, float] = {}
        self.history: list[Write] = []
        self._key_order: list[str] = []
        self._key_seen: set[str] = set()

    def next_rev(self) -> int:
        """A fresh revision number (also used by scenarios writing on their own)."""
        with self._rev_lock:
            self._rev += 1
            return self._rev

    def record_write(
        self, key: str, rev: int, *, started: float | None = None, certain: bool = True
    ) -> None:
        """Note that ``key`` was written with ``rev`` just now (scenarios writing directly)."""
        now = time.time()
        with self._rev_lock:
            self._note_key(key)
            if certain:
                self.written_at[rev] = now
            self.history.append(Write(key, rev, "upsert", started or now, now, certain))

    def record_delete(
        self, key: str, *, started: float | None = None, certain: bool = True
    ) -> None:
        """Note that ``key`` was deleted just now; the delete takes a fresh rev."""
        rev, now = self.next_rev(), time.time()
        with self._rev_lock:
            self._note_key(key)
            self.history.append(Write(key, rev, "delete", started or now, now, certain))

    def _note_key(self, key: str) -> None:
        if key not in self._key_seen:
            self._key_seen.add(key)
            self._key_order.append(key)
        self.ever_written.add(key)

    def known_keys(self) -> list[str]:
        """Every key in the history, in the order first written."""
        with self._rev_lock:
            return list(self._key_order)

    def writes(self) -> list[Write]:
        """A copy of the history so far."""
        with self._rev_lock:
            return list(self.history)

    def recent_keys(self, n: int) -> list[str]:
        """The keys of the last ``n`` writes, newest first, without repeats."""
        with self._rev_lock:
            tail = self.history[-4 * n :]
        out: list[str] = []
        for w in reversed(tail):
            if w.key not in out:
                out.append(w.key)
        return out[:n]
