"""The rig: one chaos fleet with its writer, observers and event sender, and the final verdict.

Why it exists: every scenario needs the same things around its fault -- two watchers and
three replicas as real processes on a real redis-server and the MongoDB wire double,
pinned configs, a writer, a channel observer, a background event sender -- and ends with
the same checks. A scenario module only injects its fault and states its own invariants
through :meth:`Rig.check`; :meth:`Rig.settle` then stops the writes, waits for the fleet
to converge (a generous deadline, never a speed assertion) and compares every replica
with the collection.

While it runs, a :class:`~tests.chaos.reading.Reader` asks every replica for the keys
being changed; at the end its record is judged for monotonic reads and bounded staleness
(:mod:`tests.chaos.consistency`, bound ``SCC_MAX_STALENESS_S`` + 1 s), and every
replica's full reloads are counted from ``/metrics``.

Settling: a marker document is written last; once a watcher published it (seen on the
channel with its seq S), every change before it was published too, so a replica whose
``last_seq`` reached S with its stream active must hold exactly the collection.

Every thread the rig starts is named, owned and joined in :meth:`Rig.close`, and every
process is stopped by the fleet; the workdir with all logs is removed only when the run
passed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import httpx
import redis
from bson.codec_options import DatetimeConversion
from pymongo import ASCENDING, MongoClient
from pymongo.collection import Collection

from shared.clients import MONGO_DOCUMENT_OPTIONS
from shared.keys import Keys
from tests.chaos.consistency import monotonic_violations, stale_reads
from tests.chaos.digesting import ReplicaDigest, compare_replica, read_collection
from tests.chaos.errors import HarnessTimeout, SetupFailed
from tests.chaos.events import EventClient, EventSender
from tests.chaos.observing import (
    ChannelObserver,
    HealthPoller,
    Seen,
    max_publish_lag,
    ordering_violations,
)
from tests.chaos.probing import Metrics, cache_health, delta, scrape
from tests.chaos.profile import FLEET_ENV, HMAC_KEY, NAMESPACE, Profile
from tests.chaos.reading import Reader
from tests.chaos.reporting import RunResult
from tests.chaos.writer import KEY_FIELD, MARKER_KEY, Writer, pinned_config, with_key
from tests.support.fleet import Child, Fleet

WATCHERS: Final = ("w-1", "w-2")
REPLICAS: Final = ("r-1", "r-2", "r-3")
_LOG_TAIL: Final = 2500
#: Examples of each consistency finding listed with a failed result.
_SHOWN: Final = 10


class Rig:
    """One run of one scenario: :meth:`start`, the scenario, :meth:`settle`, :meth:`close`."""

    def __init__(
        self,
        *,
        scenario: str,
        seed: int,
        profile: Profile,
        workdir_root: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.profile = profile
        self.seed = seed
        root = workdir_root or Path(tempfile.gettempdir())
        self.workdir = Path(tempfile.mkdtemp(prefix=f"scc-chaos-{scenario}-{seed}-", dir=root))
        self.result = RunResult(scenario, seed, profile.name, workdir=str(self.workdir))
        self.keys = Keys(NAMESPACE)
        env = {**FLEET_ENV, **(extra_env or {})}
        self.fleet = Fleet(namespace=NAMESPACE, extra_env=env, workdir=self.workdir)
        self.key_field = env.get("SCC_KEY_FIELD", KEY_FIELD)
        self.staleness_bound_s = float(env["SCC_MAX_STALENESS_S"]) + 1.0
        self.absent_keys: set[str] = set()
        self.redis_resets: list[float] = []
        #: Monotonic times the harness itself moved ``{ns}:seq`` (a new count starts there).
        self.seq_breaks: list[float] = []
        #: Keys the reader leaves alone (a 15 MiB config read 100 times a second is a benchmark).
        self.unread_keys: set[str] = set()
        #: Keys the reader asks every replica for in every round (a scenario's probes).
        self.focus_keys: list[str] = []
        self._started_at = time.monotonic()
        self._started_wall = time.time()
        self._mongo: MongoClient[dict[str, Any]] | None = None
        self._redis: redis.Redis | None = None
        self._http = httpx.Client(timeout=10.0)
        self._baseline: dict[str, Metrics] = {}
        self.writer: Writer | None = None
        self.reader: Reader | None = None
        self.observer: ChannelObserver | None = None
        self.health: HealthPoller | None = None
        self.events = EventClient(self.replica_urls)
        self.sender: EventSender | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> Rig:
        """Start Redis, the double, pinned configs, 2 watchers, 3 replicas and the observers."""
        fleet = self.fleet
        fleet.start_redis()
        fleet.start_mongo()
        # DATETIME_AUTO: the harness must read back any date MongoDB stores (year 10000).
        self._mongo = MongoClient(
            fleet.mongo_uri,
            serverSelectionTimeoutMS=5000,
            **{**MONGO_DOCUMENT_OPTIONS, "datetime_conversion": DatetimeConversion.DATETIME_AUTO},
        )
        self.collection.create_index([(self.key_field, ASCENDING)], unique=True)
        self.collection.insert_many(
            [pinned_config(i, self.key_field) for i in range(self.profile.pinned)]
        )
        for name in WATCHERS:
            fleet.start_watcher(name)
        for name in REPLICAS:
            fleet.start_replica(name, wait_ready=False)
        try:
            for child in fleet.replicas.values():
                child.wait_http("/health/ready", timeout=60)
        except (RuntimeError, TimeoutError) as e:
            raise SetupFailed(f"fleet did not become ready: {e}") from e
        self.observer = ChannelObserver(
            redis_url=self.redis_url, channel=self.keys.invalidations, hmac_key=HMAC_KEY.encode()
        )
        self.observer.start()
        self.health = HealthPoller(self.replica_urls)
        self.health.start()
        self._baseline = {
            name: scrape(self._http, url) for name, url in self.replica_urls().items()
        }
        self.writer = Writer(
            uri=fleet.mongo_uri,
            database=fleet.database,
            collection=fleet.collection,
            seed=self.seed,
            key_space=self.profile.key_space,
            ops_per_s=self.profile.writer_ops_per_s,
            deletes=self.delete_mix,
            key_field=self.key_field,
        )
        self.writer.start()
        self.reader = Reader(
            self.replica_urls,
            recent=self.writer.recent_keys,
            known=self.writer.known_keys,
            seed=self.seed,
            skip=self.unread_keys.__contains__,
            focus=lambda: tuple(self.focus_keys),
        )
        self.reader.start()
        self.sender = EventSender(self.events, pinned=self.profile.pinned, seed=self.seed + 1)
        self.sender.start()
        return self

    def close(self) -> None:
        """Stop every thread, client and process; keep the workdir only if the run failed."""
        for stop in (
            self.sender.stop if self.sender else None,
            self.reader.stop if self.reader else None,
            self.writer.close if self.writer else None,
            self.health.stop if self.health else None,
            self.observer.stop if self.observer else None,
        ):
            if stop is not None:
                try:
                    stop()
                except Exception as e:  # keep closing the rest; the result says why
                    self.check(False, f"harness: stopping a helper failed: {e!r}")
        self.events.close()
        self._http.close()
        if self._mongo is not None:
            self._mongo.close()
        if self._redis is not None:
            self._redis.close()
        self.fleet.close()
        self.result.duration_s = round(time.monotonic() - self._started_at, 2)
        if self.result.ok:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ----------------------------------------------------------------- handles
    @property
    def delete_mix(self) -> bool:
        """Odd seeds write with deletes, even seeds without (see :mod:`tests.chaos.writer`)."""
        return self.seed % 2 == 1

    @property
    def collection(self) -> Collection[dict[str, Any]]:
        """The watched collection, through a synchronous PyMongo client."""
        assert self._mongo is not None
        return self._mongo[self.fleet.database][self.fleet.collection]

    @property
    def mongo(self) -> MongoClient[dict[str, Any]]:
        """The harness's PyMongo client (admin commands reach the double's fault hooks)."""
        assert self._mongo is not None
        return self._mongo

    def double_fault(self, verb: str, **arguments: Any) -> dict[str, Any]:
        """Run ``{doubleFault: verb, ...}`` on the double's admin database."""
        return dict(self.mongo.admin.command({"doubleFault": verb, **arguments}))

    @property
    def redis_url(self) -> str:
        """URL of the fleet's redis-server."""
        assert self.fleet.redis is not None
        return self.fleet.redis.url

    @property
    def redis(self) -> redis.Redis:
        """A synchronous Redis client (str responses) on the fleet's server."""
        if self._redis is None:
            self._redis = redis.Redis.from_url(
                self.redis_url, socket_timeout=5, socket_connect_timeout=2, decode_responses=True
            )
        return self._redis

    def replica_urls(self) -> dict[str, str]:
        """Replica name → base URL."""
        return {name: child.url for name, child in self.fleet.replicas.items()}

    @property
    def http(self) -> httpx.Client:
        """The rig's HTTP client (main thread only)."""
        return self._http

    # --------------------------------------------------------------- recording
    def check(self, condition: bool, violation: str) -> bool:
        """Record ``violation`` unless ``condition``; returns ``condition``."""
        if not condition:
            self.result.violations.append(violation)
        return condition

    def write_probe(self, key: str, doc: dict[str, Any] | None = None) -> int:
        """Upsert probe ``key`` with a fresh rev (the reader watches it); returns the rev."""
        assert self.writer is not None
        rev = self.writer.next_rev()
        body = {"rev": rev, "enabled": True, "ingestion": {"landing_container": f"{key}-c"}}
        started = time.time()
        self.collection.replace_one(
            {self.key_field: key}, with_key({**body, **(doc or {})}, self.key_field, key), True
        )
        self.writer.record_write(key, rev, started=started)
        if key not in self.focus_keys:
            self.focus_keys.append(key)
        return rev

    def note(self, key: str, value: Any) -> None:
        """Something worth printing with the result (not an invariant)."""
        self.result.notes[key] = value

    def wait(
        self, condition: Callable[[], bool], *, timeout: float, what: str, every: float = 0.05
    ) -> None:
        """Poll until ``condition()``; :class:`HarnessTimeout` naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise HarnessTimeout(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(every)

    # ------------------------------------------------------------ fleet queries
    def leader(self) -> tuple[str | None, int]:
        """``({ns}:leader, {ns}:epoch)`` as Redis holds them now."""
        leader, epoch = self.redis.mget([self.keys.leader, self.keys.epoch])
        return (None if leader is None else str(leader)), int(epoch or 0)

    def wait_leader(self, *, above_epoch: int = 0, timeout: float = 20.0) -> tuple[str, int]:
        """Wait until some watcher holds the lease with an epoch above ``above_epoch``."""
        found: list[tuple[str, int]] = []

        def elected() -> bool:
            try:
                leader, epoch = self.leader()
            except redis.RedisError:
                return False
            if leader is not None and epoch > above_epoch:
                found.append((leader, epoch))
                return True
            return False

        self.wait(elected, timeout=timeout, what=f"a leader with epoch > {above_epoch}")
        return found[-1]

    def watcher(self, name: str) -> Child:
        """The watcher process called ``name``."""
        return self.fleet.watchers[name]

    def replica(self, name: str) -> Child:
        """The replica process called ``name``."""
        return self.fleet.replicas[name]

    def resyncs(self, name: str) -> dict[str, int]:
        """Resyncs of replica ``name`` since the scenario started, by reason (non-zero)."""
        now = scrape(self._http, self.replica_urls()[name])
        by_reason = delta(now, self._baseline[name], "scc_replica_resyncs_total", "reason")
        return {reason: int(n) for reason, n in by_reason.items() if n}

    def check_no_unproven_reloads(self, after: str) -> None:
        """No replica reloaded for any reason but a broadcast ``resync`` (nothing was lost)."""
        for name in self.fleet.replicas:
            unproven = {r: n for r, n in self.resyncs(name).items() if r != "broadcast"}
            self.check(not unproven, f"{name} reloaded after {after}: {unproven}")

    def baseline(self, name: str) -> Metrics:
        """Replica ``name``'s metrics as scraped when the scenario started."""
        return self._baseline[name]

    # ----------------------------------------------------------------- verdict
    def settle(self) -> None:
        """Stop writes, wait for convergence, compare every replica, run the shared checks."""
        assert self.writer is not None and self.observer is not None and self.sender is not None
        stopped = time.monotonic()
        self.writer.stop()
        self.sender.stop()
        marker = self._publish_marker()
        converged = marker is not None and self._wait_caught_up(marker)
        if self.reader is not None:
            self.reader.stop()  # its lookups of deleted keys would read MongoDB
        expected, problems = read_collection(self.collection, self.key_field)
        for problem in problems:
            self.check(False, f"collection: {problem}")
        absent = self.writer.ever_written | self.absent_keys
        digests = [
            compare_replica(self._http, name, url, expected, absent)
            for name, url in self.replica_urls().items()
        ]
        if converged and all(d.equal for d in digests):
            self.result.converge_s = round(time.monotonic() - stopped, 2)
        self._verdict(digests)
        self._shared_checks()

    def _publish_marker(self) -> Seen | None:
        assert self.writer is not None and self.observer is not None
        deadline = time.monotonic() + self.profile.converge_timeout_s
        while time.monotonic() < deadline:
            if not any(child.alive for child in self.fleet.watchers.values()):
                self.check(False, "every watcher has exited: nothing can publish the marker")
                return None
            since = self.observer.count()
            rev = self.writer.next_rev()
            self.collection.replace_one(
                {self.key_field: MARKER_KEY},
                with_key({"rev": rev}, self.key_field, MARKER_KEY),
                upsert=True,
            )
            self.writer.record_write(MARKER_KEY, rev)
            seen = self.observer.wait_for(
                _marker(rev),
                timeout=min(5.0, max(0.1, deadline - time.monotonic())),
                since=since,
            )
            if seen is not None:
                return seen
        self.check(False, "no watcher published the settle marker before the deadline")
        return None

    def _wait_caught_up(self, marker: Seen) -> bool:
        assert marker.seq is not None
        deadline = time.monotonic() + self.profile.converge_timeout_s
        behind: dict[str, Any] = {}
        while time.monotonic() < deadline:
            behind = {}
            for name, url in self.replica_urls().items():
                health = cache_health(self._http, url)
                if (
                    health is None
                    or not health.get("change_stream_active")
                    or (health.get("last_seq") or 0) < marker.seq
                ):
                    behind[name] = health
            if not behind:
                return True
            time.sleep(0.1)
        for name, health in behind.items():
            self.check(False, f"{name} never caught up with marker seq {marker.seq}: {health}")
        return False

    def _verdict(self, digests: list[ReplicaDigest]) -> None:
        for d in digests:
            if not d.equal:
                self.result.divergences += 1
                self.result.violations.append(d.describe())
        self.note("collection_size", digests[0].expected_size if digests else 0)

    def _shared_checks(self) -> None:
        assert self.writer is not None and self.observer is not None and self.sender is not None
        messages = self.observer.snapshot()
        for violation in ordering_violations(messages, breaks=self.seq_breaks):
            self.check(False, f"channel: {violation}")
        for violation in self.sender.violations:
            self.check(False, violation)
        self.check(
            self.sender.accepted > 0, "no blob event for a pinned config was accepted at all"
        )
        self.note("events_accepted", self.sender.accepted)
        if self.sender.retried_503:
            self.note("events_retried_after_503", self.sender.retried_503)
        self.result.max_lag_s = _round(max_publish_lag(messages, self.writer.written_at))
        reasons: Counter[str] = Counter()
        for name in self.fleet.replicas:
            reasons.update(self.resyncs(name))
        self.result.resyncs = sum(reasons.values())
        self.note("resync_reasons", dict(sorted(reasons.items())))
        broadcasts = Counter(m.reason for m in messages if m.kind == "resync" and not m.injected)
        if broadcasts:
            self.note("broadcast_resyncs", dict(sorted(broadcasts.items(), key=str)))
        self._consistency_checks()
        self.note("writes", sum(self.writer.ops.values()))
        if self.writer.errors:
            self.note("write_errors", dict(self.writer.errors))
        for child in [*self.fleet.watchers.values(), *self.fleet.replicas.values()]:
            self.check(child.alive, f"{child.name} is not running at the end:\n{_tail(child)}")
            text = child.log_text()
            if "Traceback" in text:
                at = text.index("Traceback")
                self.check(False, f"{child.name} logged a traceback:\n{text[at : at + _LOG_TAIL]}")

    def _consistency_checks(self) -> None:
        """Monotonic reads, bounded staleness and full reloads (module docstring)."""
        assert self.writer is not None
        reads = self.reader.snapshot() if self.reader is not None else []
        t0 = self._started_wall
        backwards = monotonic_violations(reads, t0=t0)
        stale = stale_reads(reads, self.writer.writes(), bound_s=self.staleness_bound_s, t0=t0)
        self.result.reads = len(reads)
        self.result.monotonic = len(backwards)
        self.result.stale_reads = len(stale)
        self.result.violations.extend(f"monotonic reads: {v}" for v in backwards[:_SHOWN])
        self.result.violations.extend(f"stale read: {v}" for v in stale[:_SHOWN])
        unanswered = Counter(r.status for r in reads if r.status not in (200, 404))
        if unanswered:
            self.note("reads_not_judged", dict(sorted(unanswered.items())))
        self.result.full_reloads = sum(self.full_reloads(name) for name in self.fleet.replicas)

    def full_reloads(self, name: str) -> int:
        """Whole-collection reloads replica ``name`` swapped in since the scenario started."""
        now = scrape(self._http, self.replica_urls()[name])
        by_reason = delta(
            now, self._baseline[name], "source_config_cache_invalidations_total", "reason"
        )
        return int(by_reason.get("reload", 0))


def _marker(rev: int) -> Callable[[Seen], bool]:
    return lambda m: m.key == MARKER_KEY and m.rev == rev and not m.injected


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _tail(child: Child) -> str:
    return child.log_text()[-_LOG_TAIL:]
