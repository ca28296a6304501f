"""Scenario 7: bad input at volume, on the channel and on ``POST /events/blob``.

1. N payloads published on ``{ns}:invalidations`` (:func:`~tests.chaos.fuzzing.channel_payloads`):
   every replica must count each undecodable one under exactly the reason its decoder
   gives (``scc_messages_rejected_total{reason}`` moves by exactly the expected amounts),
   survive the valid-looking out-of-sequence ones by resyncing, and end with none of the
   forged keys in its cache.
   Then a captured genuine (signed) change is replayed at the *next* seq, as a publisher
   without the key could: every replica must notice the genuine message with that seq as
   a ``seq_conflict`` and reload, and the replayed (older) change must move no config back
   (the reader's monotonic and staleness checks).
2. A schema-driven fuzz of ``POST /events/blob`` (hypothesis, from ``/openapi.json``): no
   answer is a 5xx.
3. Hostile edges (:mod:`tests.chaos.hostile`): a batch with an event nested 300 deep
   (400 naming it, retried, none of its good events stored); on an extra replica with
   ``SCC_ALLOWED_BLOB_HOSTS`` and a 1 s header timeout, four concurrent 5,000-event
   batches (all stored, RSS under the chart's 512 MiB, ``/health/live`` within 1 s) and
   one of 5,001 (413), slow and idle clients (descriptors back to baseline, probes
   answered), and events naming a real config from a foreign container or host (never
   accepted: ``route_mismatch`` / ``foreign_url``).
4. Redis is killed for a moment while valid events arrive: those get 503 (the only 5xx
   allowed), then Redis comes back empty.

Then every request the harness made is reconciled with each replica's ``/metrics``:
refused requests = ``scc_events_rejected_total``, accepted and dead-lettered events =
``scc_events_total{outcome}``. Caches must still equal the collection (shared checks).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Final

import orjson

from tests.chaos import hostile
from tests.chaos.events import event_grid
from tests.chaos.fuzzing import (
    FORGED_KEYS,
    FuzzRequest,
    channel_payloads,
    request_strategy,
    routing_hints,
    run_fuzz,
)
from tests.chaos.probing import Metrics, delta, scrape
from tests.chaos.profile import HMAC_KEY
from tests.chaos.rig import Rig
from tests.chaos.writer import SHARED_CONTAINERS, pinned_container, pinned_key

NAME = "bad-input"
TITLE = "7. bad input at volume (channel payloads, /events/blob fuzz, hostile edges)"
BATCH: Final = 25
REJECTED: Final = "scc_messages_rejected_total"


def run(rig: Rig) -> None:
    """Flood the channel, fuzz the endpoint, take Redis away briefly, reconcile the counts."""
    rng = random.Random(rig.seed)
    time.sleep(rig.profile.burst_s)
    _flood_channel(rig, rng)
    time.sleep(rig.profile.burst_s)
    _replay_at_next_seq(rig)
    _fuzz_endpoint(rig)
    hostile.deep_nesting(rig)
    with hostile.edge_replica(rig) as edge:
        hostile.max_batches(rig, edge)
        hostile.slow_clients(rig, edge)
        hostile.foreign_routes(rig)
    _redis_down_window(rig)
    assert rig.sender is not None
    rig.sender.stop()
    _reconcile_events(rig)


def _flood_channel(rig: Rig, rng: random.Random) -> None:
    assert rig.observer is not None
    before = {name: scrape(rig.http, url) for name, url in rig.replica_urls().items()}
    seq, epoch = (int(v or 0) for v in rig.redis.mget([rig.keys.seq, rig.keys.epoch]))
    payloads = channel_payloads(
        rng, rig.profile.bad_payloads, hmac_key=HMAC_KEY.encode(), seq=seq, epoch=epoch
    )
    rig.absent_keys.update(FORGED_KEYS)
    listeners = len(rig.fleet.replicas) + 1
    short, served = 0, 0
    expected: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for i, payload in enumerate(payloads):
        kinds[payload.kind] += 1
        if payload.reason is not None and payload.reason.startswith("crash:"):
            rig.check(False, f"the message decoder raised {payload.reason[6:]} (not "
                      f"MessageError) on {payload.raw[:200]!r}")  # fmt: skip
        elif payload.reason is not None:
            expected[payload.reason] += 1
        rig.observer.mark_injected(payload.raw)
        short += int(rig.redis.publish(rig.keys.invalidations, payload.raw)) < listeners
        if i % BATCH == BATCH - 1:
            served += _forged_answers(rig, rng)
    rig.note("payloads", dict(sorted(kinds.items())))
    rig.note("forged_answers_during_flood", served)
    if short:
        rig.note("publishes_missing_a_listener", short)
    for name, url in rig.replica_urls().items():
        counted = _wait_counted(rig, url, before[name], expected, exact=not short)
        mismatch = {
            r: (counted.get(r, 0), n) for r, n in expected.items() if counted.get(r, 0) != n
        }
        extra = {r: n for r, n in counted.items() if n and r not in expected}
        if short:
            ok = all(counted.get(r, 0) <= n for r, n in expected.items()) and not extra
        else:
            ok = not mismatch and not extra
        rig.check(
            ok,
            f"{name}: rejected messages counted != published: "
            f"(counted, sent) {mismatch}, extra {extra}",
        )


def _all_in_sync(rig: Rig, timeout: float) -> bool:
    """Every replica ready with nothing pending (the flood's reloads are over)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bodies = [rig.http.get(f"{url}/health/cache").json() for url in rig.replica_urls().values()]
        if all(b.get("pending_resync") is None and b.get("change_stream_active") for b in bodies):
            return True
        time.sleep(0.1)
    return False


def _reloads(rig: Rig, name: str) -> int:
    return sum(rig.resyncs(name).values())


def _replay_at_next_seq(rig: Rig, timeout: float = 10.0) -> None:
    """Replay a captured signed change under the next seq; every replica must catch it.

    Caught means the genuine message with that seq was seen as a ``seq_conflict``; a
    replica that was already reloading for another reason when the replay came is
    corrected by that reload, so a reload of any reason after the injection counts too.
    """
    assert rig.observer is not None
    rig.check(_all_in_sync(rig, timeout), "replicas did not settle after the channel flood")
    pubsub = rig.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(rig.keys.invalidations)
    captured: bytes | None = None
    deadline = time.monotonic() + timeout
    while captured is None and time.monotonic() < deadline:
        reply = pubsub.get_message(timeout=0.2)
        data = None if reply is None else reply["data"]
        raw = data.encode() if isinstance(data, str) else data
        if isinstance(raw, bytes) and b'"kind":"upsert"' in raw:
            captured = raw
    pubsub.close()
    if not rig.check(captured is not None, "no genuine upsert seen on the channel to replay"):
        return
    assert captured is not None
    before = {name: _reloads(rig, name) for name in rig.fleet.replicas}
    body = orjson.loads(captured)
    body["seq"] = int(rig.redis.get(rig.keys.seq) or 0) + 1  # seq is outside the signature
    forged = orjson.dumps(body)
    rig.observer.mark_injected(forged)
    rig.redis.publish(rig.keys.invalidations, forged)
    rig.note("replayed_at_next_seq", body["seq"])
    time.sleep(0.5)
    rig.note(
        "replay_caught_as_seq_conflict",
        sum(rig.resyncs(name).get("seq_conflict", 0) > 0 for name in rig.fleet.replicas),
    )
    for name in rig.fleet.replicas:
        deadline = time.monotonic() + timeout
        while _reloads(rig, name) <= before[name]:
            if time.monotonic() > deadline:
                rig.check(False, f"{name} did not notice the replay at seq {body['seq']}")
                break
            time.sleep(0.1)


def _forged_answers(rig: Rig, rng: random.Random) -> int:
    key = rng.choice(FORGED_KEYS)
    return sum(
        rig.http.get(f"{url}/configs/{key}").status_code == 200
        for url in rig.replica_urls().values()
    )


def _wait_counted(
    rig: Rig, url: str, before: Metrics, expected: Counter[str], *, exact: bool
) -> dict[str, int]:
    """The replica's rejections since ``before``, once all expected (or, if some publish
    missed a listener, once the count stopped moving for a second) or at the deadline."""
    deadline = time.monotonic() + rig.profile.converge_timeout_s
    last: dict[str, int] = {}
    still_since = time.monotonic()
    while True:
        after = scrape(rig.http, url)
        counted = {r: int(n) for r, n in delta(after, before, REJECTED, "reason").items()}
        if counted != last:
            last, still_since = counted, time.monotonic()
        if exact:
            done = all(counted.get(r, 0) >= n for r, n in expected.items())
        else:
            done = time.monotonic() - still_since >= 1.0
        if done or time.monotonic() > deadline:
            return counted
        time.sleep(0.1)


def _fuzz_endpoint(rig: Rig) -> None:
    names = sorted(rig.fleet.replicas)
    openapi = orjson.loads(rig.http.get(rig.replica(names[0]).url + "/openapi.json").content)
    containers = [pinned_container(i) for i in range(rig.profile.pinned)] + list(SHARED_CONTAINERS)
    sources = [pinned_key(i) for i in range(rig.profile.pinned)] + list(FORGED_KEYS[:2])
    strategy = request_strategy(openapi, routing_hints(containers, sources))
    rng = random.Random(rig.seed + 7)
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []

    def send(request: FuzzRequest) -> None:
        replica = rng.choice(names)
        response = rig.events.post(
            replica,
            request.body,
            content_type=request.content_type,
            headers=request.headers,
            params=request.params,
        )
        status = 0 if response is None else response.status_code
        statuses[status] += 1
        if (status >= 500 or status == 0) and len(server_errors) < 5:
            text = "transport error" if response is None else response.text[:300]
            server_errors.append(
                f"{replica} answered {status} to {request.shape} {request.body[:200]!r}: {text}"
            )

    run_fuzz(strategy, send, examples=rig.profile.fuzz_examples, seed=rig.seed)
    for _ in range(2):  # over the 1 MiB body limit: 413, not a crash
        huge = b"[" + b'{"id":"x"},' * 110_000 + b'{"id":"y"}]'
        response = rig.events.post(rng.choice(names), huge)
        statuses[0 if response is None else response.status_code] += 1
    rig.note("fuzz_statuses", dict(sorted(statuses.items())))
    for error in server_errors:
        rig.check(False, f"fuzz: {error}")
    rig.check(
        not any(s >= 500 or s == 0 for s in statuses), f"fuzz: server errors {dict(statuses)}"
    )


def _redis_down_window(rig: Rig) -> None:
    assert rig.fleet.redis is not None
    rig.fleet.redis.stop(kill=True)
    statuses: Counter[int] = Counter()
    try:
        for n, name in enumerate(sorted(rig.fleet.replicas)):
            event = event_grid(f"redis-down-{n}", pinned_container(0), "incoming/down.csv")
            response = rig.events.post(name, orjson.dumps([event]))
            statuses[0 if response is None else response.status_code] += 1
    finally:
        rig.fleet.redis.start()
        rig.redis_resets.append(time.monotonic())
    rig.note("redis_down_statuses", dict(sorted(statuses.items())))
    rig.check(
        set(statuses) <= {503}, f"events while Redis was down: {dict(statuses)}, expected only 503"
    )
    rig.wait_leader(timeout=30)


def _reconcile_events(rig: Rig) -> None:
    for name, url in rig.replica_urls().items():
        ledger = rig.events.ledgers.get(name)
        if ledger is None:
            continue
        if ledger.transport_errors:
            rig.note(f"{name}_unreconciled_transport_errors", ledger.transport_errors)
            continue
        now, base = scrape(rig.http, url), rig.baseline(name)
        refused = int(delta(now, base, "scc_events_rejected_total"))
        outcomes = {k: int(v) for k, v in delta(now, base, "scc_events_total", "outcome").items()}
        rig.check(
            refused == ledger.refused,
            f"{name}: refused {ledger.refused} requests but counted {refused} in "
            f"scc_events_rejected_total (statuses {dict(ledger.statuses)})",
        )
        answered = {
            "accepted": ledger.accepted,
            "dead_lettered": ledger.dead_lettered,
            "validation": ledger.validations,
        }
        for outcome, sent in answered.items():
            counted = outcomes.get(outcome, 0)
            rig.check(
                counted == sent,
                f"{name}: {sent} events {outcome} per its answers, scc_events_total says {counted}",
            )
