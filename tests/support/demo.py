"""``make demo``: the whole system as local processes, walked through its failure modes.

No Docker needed: a local redis-server, the MongoDB wire double seeded with the example
configs of ``deploy/seed/source_configs.json``, two watchers and three replicas, each a
real process configured only through ``SCC_*`` variables. The walk-through changes
configs, kills the leader, restarts Redis, and after each step prints what every replica
sees and how long the change took to reach all of them. Everything it started is stopped
at the end (or on Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis
from pymongo import MongoClient

from shared.keys import Keys
from tests.support.fleet import ROOT, Fleet

SEED = ROOT / "deploy" / "seed" / "source_configs.json"
FAST = {
    "SCC_LEADER_TTL_MS": "2000",
    "SCC_HEARTBEAT_INTERVAL_MS": "250",
    "SCC_MAX_AWAIT_MS": "200",
    "SCC_LOG_LEVEL": "warning",
}


def say(text: str) -> None:
    """One step of the walk-through, in bold where the terminal allows."""
    bold = sys.stdout.isatty()
    print(f"\n\033[1m{text}\033[0m" if bold else f"\n== {text}", flush=True)


def wait_all(fleet: Fleet, check: Callable[[httpx.Response], bool], path: str) -> float:
    """Milliseconds until every replica's ``GET path`` satisfies ``check`` (30 s at most)."""
    start = time.perf_counter()
    pending = set(fleet.replicas)
    with httpx.Client(timeout=2.0) as http:
        while pending and time.perf_counter() - start < 30:
            for name in list(pending):
                if check(http.get(fleet.replicas[name].url + path)):
                    pending.discard(name)
            time.sleep(0.001)
    if pending:
        raise RuntimeError(f"replicas {sorted(pending)} did not converge on {path}")
    return (time.perf_counter() - start) * 1000


def inspect(fleet: Fleet) -> None:
    """Print ``scc inspect`` as an operator would see it."""
    assert fleet.redis is not None
    env = {**os.environ, "SCC_REDIS_URL": fleet.redis.url, "SCC_NAMESPACE": fleet.namespace}
    env["SCC_HEARTBEAT_INTERVAL_MS"] = FAST["SCC_HEARTBEAT_INTERVAL_MS"]
    done = subprocess.run(
        [sys.executable, "-m", "scc", "inspect"],
        env=env,
        cwd=ROOT,
        text=True,
        capture_output=True,
        check=False,
    )
    print(done.stdout.rstrip() or done.stderr.rstrip())
    print(f"(scc inspect exit status {done.returncode})")


def leader_of(fleet: Fleet) -> str | None:
    """Instance id holding the lease, if any."""
    assert fleet.redis is not None
    with redis.Redis.from_url(fleet.redis.url) as client:
        value = client.get(Keys(fleet.namespace).leader)
    return value.decode() if value else None


def wait_leader(fleet: Fleet, *, not_: str | None = None, timeout: float = 30.0) -> str:
    """Wait until a watcher (other than ``not_``) holds the lease; return its id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader = leader_of(fleet)
        if leader and leader != not_:
            return leader
        time.sleep(0.02)
    raise RuntimeError("no watcher took the lease")


def version_is(value: int) -> Callable[[httpx.Response], bool]:
    """A check: the config exists and its ``demo_version`` equals ``value``."""
    return lambda r: r.status_code == 200 and r.json().get("demo_version") == value


def walk(fleet: Fleet) -> None:
    """The demo itself; raises if any replica fails to converge."""
    say("1. Starting redis-server, the MongoDB double (seeded), 2 watchers, 3 replicas")
    fleet.start_redis()
    fleet.start_mongo(seed=SEED)
    for name in ("watcher-1", "watcher-2"):
        fleet.start_watcher(name)
    first_leader = wait_leader(fleet)
    for name in ("replica-1", "replica-2", "replica-3"):
        fleet.start_replica(name)
    print(
        f"leader: {first_leader}; replicas ready on "
        + ", ".join(c.url for c in fleet.replicas.values())
    )
    inspect(fleet)

    coll = MongoClient(fleet.mongo_uri)[fleet.database][fleet.collection]
    key = "demo-orders"
    doc = {
        "source_id": key,
        "enabled": True,
        "demo_version": 1,
        "ingestion": {"landing_container": "demo-landing", "path_pattern": "orders/*.csv"},
    }

    say("2. Create a config, then update it: time until all three replicas serve it")
    coll.insert_one(doc)
    print(
        f"create seen by all replicas in {wait_all(fleet, version_is(1), f'/configs/{key}'):.1f} ms"
        " (a miss reads MongoDB, so a brand-new config is found at once)"
    )
    coll.update_one({"source_id": key}, {"$set": {"demo_version": 2}})
    print(
        f"update applied by all replicas in "
        f"{wait_all(fleet, version_is(2), f'/configs/{key}'):.1f} ms (from the message)"
    )

    say("3. SIGKILL the leader while configs keep changing")
    fleet.watchers[first_leader].signal(signal.SIGKILL)
    killed = time.perf_counter()
    new_leader = wait_leader(fleet, not_=first_leader)
    print(
        f"{new_leader} took the lease {(time.perf_counter() - killed) * 1000:.0f} ms after the kill"
    )
    coll.update_one({"source_id": key}, {"$set": {"demo_version": 3}})
    print(
        f"next update reached all replicas in "
        f"{wait_all(fleet, version_is(3), f'/configs/{key}'):.1f} ms"
    )
    fleet.watchers[first_leader].start()

    say("4. Restart Redis (every key lost): watchers re-elect and resync, replicas reload")
    assert fleet.redis is not None
    fleet.redis.restart()
    coll.update_one({"source_id": key}, {"$set": {"demo_version": 4}})
    print(
        f"update after the Redis restart reached all replicas in "
        f"{wait_all(fleet, version_is(4), f'/configs/{key}'):.1f} ms"
    )
    wait_leader(fleet)

    say("5. Delete the config")
    coll.delete_one({"source_id": key})
    gone = wait_all(fleet, lambda r: r.status_code == 404, f"/configs/{key}")
    print(f"delete seen by all replicas in {gone:.1f} ms")
    coll.database.client.close()
    time.sleep(1.0)
    inspect(fleet)


def main(argv: list[str] | None = None) -> int:
    """Run the walk-through; 0 when every step converged."""
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--keep-logs", action="store_true", help="print where the logs are")
    args = parser.parse_args(argv)
    fleet = Fleet(extra_env=FAST)
    try:
        walk(fleet)
        say("Demo finished: every replica converged after every step.")
        return 0
    except (RuntimeError, TimeoutError) as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    finally:
        fleet.close()
        if args.keep_logs:
            print(f"logs: {Path(fleet.workdir)}")


if __name__ == "__main__":
    raise SystemExit(main())
