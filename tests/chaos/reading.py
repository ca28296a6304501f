"""Reading like a user, all the time: every replica's ``GET /configs/{key}``, recorded.

Why it exists: a fleet that ends equal to the collection may still have answered an old
version after a newer one, or a version older than the staleness bound allows, in the
middle of a fault; only a record of what was answered *while it happened* shows that.
:class:`Reader` runs one named thread per replica (``chaos-reader-r-1`` ...), each with
its own keep-alive client, reading the keys the writer changes (mostly the most recently
written ones, some older ones, and every round the keys a scenario asked it to watch)
one request at a time, so the reads of one replica are
in the order the replica answered them. Each answer becomes a :class:`Read`; the
verdicts over them are the pure functions of :mod:`tests.chaos.consistency`.

The rig stops the reader before the final digest (its lookups of deleted keys read
MongoDB, and the digest requires that no lookup does while it runs).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
import orjson

#: Keys read per round: the most recently written ones, then this many older ones.
RECENT: int = 6
OLDER: int = 2


@dataclass(frozen=True, slots=True)
class Read:
    """One answer of one replica: HTTP status (0: no answer) and the ``rev`` it carried.

    ``started``/``ended`` are wall-clock seconds, comparable with the writer's ledger.
    """

    replica: str
    key: str
    started: float
    ended: float
    status: int
    rev: int | None = None


class Reader:
    """Reads the writer's keys on every replica until stopped (module docstring)."""

    def __init__(
        self,
        replicas: Callable[[], dict[str, str]],
        *,
        recent: Callable[[int], list[str]],
        known: Callable[[], Sequence[str]],
        seed: int,
        skip: Callable[[str], bool] = lambda key: False,
        focus: Callable[[], Sequence[str]] = tuple,
        pause_s: float = 0.01,
    ) -> None:
        self._replicas = replicas
        self._recent = recent
        self._known = known
        self._skip = skip
        self._focus = focus
        self._seed = seed
        self._pause_s = pause_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.reads: list[Read] = []

    def start(self) -> None:
        """One thread per replica known now."""
        for n, (name, url) in enumerate(sorted(self._replicas().items())):
            thread = threading.Thread(
                target=self._run,
                args=(name, url, random.Random(self._seed * 31 + n)),
                name=f"chaos-reader-{name}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Stop and join every thread."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        self._threads = []

    def snapshot(self) -> list[Read]:
        """Every read so far."""
        with self._lock:
            return list(self.reads)

    def _keys(self, rng: random.Random) -> list[str]:
        keys = [*self._focus(), *self._recent(RECENT)]
        known = self._known()
        if known:
            keys += [known[rng.randrange(len(known))] for _ in range(OLDER)]
        return [k for k in dict.fromkeys(keys) if not self._skip(k)]

    def _run(self, name: str, url: str, rng: random.Random) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self._stop.is_set():
                keys = self._keys(rng)
                if not keys:
                    self._stop.wait(0.05)
                for key in keys:
                    if self._stop.is_set():
                        return
                    read = read_one(client, name, url, key)
                    with self._lock:
                        self.reads.append(read)
                    self._stop.wait(self._pause_s)


def read_one(client: httpx.Client, replica: str, url: str, key: str) -> Read:
    """``GET /configs/{key}`` once, as a :class:`Read` (status 0 when nothing answered)."""
    started = time.time()
    try:
        response = client.get(f"{url}/configs/{key}")
    except httpx.HTTPError:
        return Read(replica, key, started, time.time(), 0)
    ended = time.time()
    rev: int | None = None
    if response.status_code == 200:
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        value = body.get("rev") if isinstance(body, dict) else None
        rev = value if isinstance(value, int) and not isinstance(value, bool) else None
    return Read(replica, key, started, ended, response.status_code, rev)
