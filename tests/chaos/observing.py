"""Watching the fleet from outside: the invalidation channel, Redis commands, replica health.

Why it exists: the invariants about ordering ("epochs never go backwards", "sequence
numbers are gap-free across leaders", "a paused ex-leader publishes nothing and saves no
token after waking") cannot be read from the end state; they need a record of what went
over the wire while the fault happened. Three recorders, each on its own named thread,
each started and stopped by the rig:

* :class:`ChannelObserver` subscribes to ``{ns}:invalidations`` like a replica and keeps
  every message with its arrival time, the Redis incarnation (``run_id``) and the
  subscription session it came in, reconnecting when Redis dies;
* :class:`CommandMonitor` runs ``MONITOR`` on a raw socket for a window and keeps the
  commands Lua scripts executed (``HSET {ns}:resume``, ``PUBLISH``), which is the only
  way to see a fenced write that succeeded and was overwritten a moment later;
* :class:`HealthPoller` samples every replica's ``/health/cache``.

Checks over the records are plain functions returning human-readable violations.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import redis
import structlog

from shared.batches import decode_batch
from shared.errors import MessageError

log = structlog.get_logger("tests.chaos.observing")


@dataclass(frozen=True, slots=True)
class Seen:
    """One message as the observer received it."""

    wall: float
    mono: float
    run_id: str
    session: int
    raw_size: int
    seq: int | None = None
    epoch: int | None = None
    kind: str | None = None
    key: str | None = None
    rev: int | None = None
    reason: str | None = None
    refetch: bool = False
    rejected: str | None = None
    injected: bool = False


class ChannelObserver:
    """Subscribes to the channel on thread ``chaos-observer`` and records every message."""

    #: ``"s"`` subscribes with ``SSUBSCRIBE`` and reads ``smessage`` (a Redis Cluster
    #: shard channel); ``""`` is plain ``SUBSCRIBE``/``message``.
    shard_prefix = ""

    def __init__(self, *, redis_url: str, channel: str, hmac_key: bytes | None) -> None:
        self._url = redis_url
        self._channel = channel
        self._hmac_key = hmac_key
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._injected: set[bytes] = set()  # blake2b digests of the harness's own payloads
        self.messages: list[Seen] = []
        self.sessions = 0
        self.run_id = ""

    def start(self, timeout: float = 10.0) -> None:
        """Start the thread and wait until the first subscription is confirmed."""
        self._thread = threading.Thread(target=self._run, name="chaos-observer", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.sessions == 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("channel observer could not subscribe")
                self._cond.wait(left)

    def stop(self) -> None:
        """Stop and join the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def mark_injected(self, raw: bytes) -> None:
        """``raw`` is about to be published by the harness itself (not by a watcher)."""
        with self._cond:
            self._injected.add(_fingerprint(raw))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._session()
            except (redis.RedisError, OSError) as e:
                log.debug("observer connection lost", error=str(e))
            self._stop.wait(0.1)

    def _session(self) -> None:
        client = redis.Redis.from_url(self._url, socket_connect_timeout=1, socket_timeout=5)
        pubsub: Any = client.pubsub()  # type: ignore[no-untyped-call]  # redis-py: untyped
        try:
            run_id = str(client.info("server")["run_id"])
            getattr(pubsub, f"{self.shard_prefix}subscribe")(self._channel)
            confirmed = False
            subscribed, message = f"{self.shard_prefix}subscribe", f"{self.shard_prefix}message"
            while not self._stop.is_set():
                reply = pubsub.get_message(timeout=0.2)
                if reply is None:
                    continue
                if reply["type"] == subscribed and not confirmed:
                    confirmed = True
                    with self._cond:
                        self.sessions += 1
                        self.run_id = run_id
                        self._cond.notify_all()
                elif reply["type"] == message:
                    self._record(reply["data"], run_id)
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                pubsub.close()
            client.close()

    def _record(self, raw: bytes, run_id: str) -> None:
        wall, mono = time.time(), time.monotonic()
        with self._cond:
            injected = _fingerprint(raw) in self._injected
            session = self.sessions
        try:
            changes = decode_batch(raw, hmac_key=self._hmac_key).changes
        except MessageError as e:
            seen = [
                Seen(wall, mono, run_id, session, len(raw), rejected=e.reason, injected=injected)
            ]
        else:  # a batch message is recorded as each of its changes
            seen = [
                Seen(
                    wall,
                    mono,
                    run_id,
                    session,
                    len(raw),
                    seq=m.seq,
                    epoch=m.epoch,
                    kind=m.kind,
                    key=m.key,
                    rev=_rev(m.doc),
                    reason=m.reason,
                    refetch=m.refetch,
                    injected=injected,
                )
                for m in changes
            ]
        with self._cond:
            self.messages.extend(seen)
            self._cond.notify_all()

    def wait_for(
        self, match: Callable[[Seen], bool], *, timeout: float, since: int = 0
    ) -> Seen | None:
        """The first message from index ``since`` on matching ``match``; waits up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            index = since
            while True:
                while index < len(self.messages):
                    if match(self.messages[index]):
                        return self.messages[index]
                    index += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def snapshot(self) -> list[Seen]:
        """A copy of everything recorded so far."""
        with self._cond:
            return list(self.messages)

    def count(self) -> int:
        """How many messages were recorded so far (an index for :meth:`wait_for`)."""
        with self._cond:
            return len(self.messages)


def _fingerprint(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=16).digest()


def ordering_violations(messages: list[Seen], *, breaks: Sequence[float] = ()) -> list[str]:
    """Epoch decreases and seq gaps among the watchers' messages, per Redis incarnation.

    Within one ``run_id`` epochs never decrease (in arrival order); within one unbroken
    subscription session, every non-heartbeat message takes the next seq and a heartbeat
    repeats the last one (seq is assigned and published by one fenced script). ``breaks``
    are monotonic times at which the harness itself set ``{ns}:seq`` back: the first step
    back arriving after each is where a new count starts, not a violation.
    """
    out: list[str] = []
    top_epoch: dict[str, tuple[int, int | None]] = {}
    last_seq: dict[tuple[str, int], int] = {}
    used_breaks = 0
    for m in messages:
        if m.injected or m.rejected is not None or m.epoch is None or m.seq is None:
            continue
        top = top_epoch.get(m.run_id)
        if top is not None and m.epoch < top[0]:
            out.append(
                f"epoch went backwards: seq {m.seq} epoch {m.epoch} ({m.kind}) after "
                f"seq {top[1]} epoch {top[0]}"
            )
        else:
            top_epoch[m.run_id] = (m.epoch, m.seq)
        where = (m.run_id, m.session)
        previous = last_seq.get(where)
        if previous is not None and m.seq < previous + (m.kind != "heartbeat"):
            if sum(1 for b in breaks if b <= m.mono) > used_breaks:
                used_breaks += 1
                last_seq[where] = m.seq
                continue
        if m.kind == "heartbeat":
            if previous is not None and m.seq != previous:
                out.append(f"heartbeat carries seq {m.seq}, last change was seq {previous}")
        elif previous is not None and m.seq != previous + 1:
            out.append(
                f"seq gap on the channel: {previous} then {m.seq} ({m.kind}, epoch {m.epoch})"
            )
        if m.kind != "heartbeat" or previous is None:
            last_seq[where] = m.seq
    return out[:20]


def max_publish_lag(messages: list[Seen], written_at: dict[int, float]) -> float | None:
    """Largest (arrival − write acknowledged) over messages carrying a writer ``rev``."""
    lags = [
        m.wall - written_at[m.rev]
        for m in messages
        if m.rev is not None and m.rev in written_at and not m.injected
    ]
    return max(lags) if lags else None


# ------------------------------------------------------------------------- MONITOR
@dataclass(frozen=True, slots=True)
class Command:
    """One command as ``MONITOR`` printed it."""

    at: float
    source: str
    args: tuple[str, ...]


class CommandMonitor:
    """``MONITOR`` on a raw socket (thread ``chaos-monitor``), keeping script-run commands.

    redis-py's monitor cannot be stopped from another thread without breaking its
    connection; a raw socket with a read timeout can.
    """

    def __init__(self, *, host: str, port: int, keep: Callable[[Command], bool]) -> None:
        self._addr = (host, port)
        self._keep = keep
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self.commands: list[Command] = []
        self.error: str = ""

    def start(self) -> None:
        """Start monitoring; returns once Redis acknowledged ``MONITOR``."""
        self._thread = threading.Thread(target=self._run, name="chaos-monitor", daemon=True)
        self._thread.start()
        if not self._started.wait(5):
            raise TimeoutError(f"MONITOR not acknowledged: {self.error}")

    def stop(self) -> None:
        """Stop and join."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        try:
            with socket.create_connection(self._addr, timeout=2) as sock:
                sock.sendall(b"MONITOR\r\n")
                buffer = b""
                sock.settimeout(0.2)
                while not self._stop.is_set():
                    try:
                        chunk = sock.recv(65536)
                    except TimeoutError:
                        continue
                    if not chunk:
                        self.error = "connection closed"
                        return
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\r\n")
                    for line in lines:
                        self._line(line.decode("utf-8", "replace"))
        except OSError as e:
            self.error = str(e)
        finally:
            self._started.set()

    def _line(self, line: str) -> None:
        if line == "+OK":
            self._started.set()
            return
        if not line.startswith("+"):
            return
        stamp, _, rest = line[1:].partition(" ")
        source_end = rest.find("] ")
        if source_end < 0:
            return
        source = rest[1:source_end]
        command = Command(float(stamp), source, _monitor_args(rest[source_end + 2 :]))
        if self._keep(command):
            self.commands.append(command)


def _monitor_args(text: str) -> tuple[str, ...]:
    args: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != '"':
            i += 1
            continue
        j, out = i + 1, []
        while j < len(text) and text[j] != '"':
            if text[j] == "\\" and j + 1 < len(text):
                j += 1
            out.append(text[j])
            j += 1
        args.append("".join(out))
        i = j + 1
    return tuple(args)


# ---------------------------------------------------------------------- health poll
@dataclass(frozen=True, slots=True)
class HealthSample:
    """One ``/health/cache`` answer."""

    mono: float
    replica: str
    active: bool
    last_seq: int | None
    epoch: int | None


class HealthPoller:
    """Samples each replica's ``/health/cache`` every ``interval`` (thread ``chaos-health``)."""

    def __init__(self, replicas: Callable[[], dict[str, str]], *, interval: float = 0.15) -> None:
        self._replicas = replicas
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples: list[HealthSample] = []

    def start(self) -> None:
        """Start polling."""
        self._thread = threading.Thread(target=self._run, name="chaos-health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and join."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        with httpx.Client(timeout=0.5) as client:
            while not self._stop.is_set():
                for name, url in self._replicas().items():
                    body = _get_json(client, url + "/health/cache")
                    if body is not None:
                        self.samples.append(
                            HealthSample(
                                time.monotonic(),
                                name,
                                bool(body.get("change_stream_active")),
                                body.get("last_seq"),
                                body.get("leader_epoch"),
                            )
                        )
                self._stop.wait(self._interval)


def _get_json(client: httpx.Client, url: str) -> dict[str, Any] | None:
    try:
        response = client.get(url)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    body = response.json()
    return body if isinstance(body, dict) else None


def replica_epoch_violations(samples: list[HealthSample], *, resets: list[float]) -> list[str]:
    """A replica's ``leader_epoch`` decreasing between two Redis resets (monotonic times)."""
    out: list[str] = []
    last: dict[str, tuple[int, float]] = {}
    for s in samples:
        if s.epoch is None:
            continue
        previous = last.get(s.replica)
        reset_between = previous is not None and any(previous[1] < r <= s.mono for r in resets)
        if previous is not None and s.epoch < previous[0] and not reset_between:
            out.append(f"{s.replica}: leader_epoch {previous[0]} then {s.epoch}")
        last[s.replica] = (s.epoch, s.mono)
    return out[:20]


def _rev(doc: dict[str, Any] | None) -> int | None:
    rev = doc.get("rev") if doc is not None else None
    return rev if isinstance(rev, int) else None
