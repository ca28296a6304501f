"""The rig: one chaos fleet with its writer, reader, observers and event sender.

Why it exists: every scenario needs the same things around its fault -- two watchers and
three replicas as real processes on a real redis-server and the MongoDB wire double,
pinned configs, a writer, a reader asking every replica for the keys being changed
(:mod:`tests.chaos.reading`), a channel observer, a background event sender -- and ends
with the same checks. A scenario module only injects its fault and states its own
invariants through :meth:`Rig.check`; :meth:`Rig.settle` then stops the writes, waits
for the fleet to converge and judges the run (:mod:`tests.chaos.settling`).

Every thread the rig starts is named, owned and joined in :meth:`Rig.close`, and every
process is stopped by the fleet; the workdir with all logs is removed only when the run
passed.
"""

from __future__ import annotations

import shutil
import tempfile
import time
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
from tests.chaos import settling
from tests.chaos.errors import HarnessTimeout, SetupFailed
from tests.chaos.events import EventClient, EventSender
from tests.chaos.observing import (
    ChannelObserver,
    HealthPoller,
)
from tests.chaos.probing import Metrics, delta, scrape
from tests.chaos.profile import FLEET_ENV, HMAC_KEY, NAMESPACE, Profile
from tests.chaos.reading import Reader
from tests.chaos.reporting import RunResult
from tests.chaos.writer import KEY_FIELD, Writer, pinned_config, with_key
from tests.support.fleet import Child, Fleet

WATCHERS: Final = ("w-1", "w-2")
REPLICAS: Final = ("r-1", "r-2", "r-3")


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
        self.started_wall = time.time()
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

    def full_reloads(self, name: str) -> int:
        """Whole-collection reloads replica ``name`` swapped in since the scenario started."""
        now = scrape(self._http, self.replica_urls()[name])
        by_reason = delta(
            now, self._baseline[name], "source_config_cache_invalidations_total", "reason"
        )
        return int(by_reason.get("reload", 0))

    # ----------------------------------------------------------------- verdict
    def settle(self) -> None:
        """Stop writes, wait for convergence, compare and judge (:mod:`tests.chaos.settling`)."""
        settling.settle(self)
