"""``scc migrate-keys`` against a real redis-server: the pre-hash-tag layout moves to ``{ns}``.

The old layout is written the way a deployment from before left it (``ns:seq`` counters,
the resume hash, an events stream, de-duplication keys with a TTL), then the command runs
in-process through ``scc``'s own entry point.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from shared.keys import LegacyKeys
from shared.layout import old_layout_only
from tests.integration.scc.conftest import Deployment


def _old_deployment(deployment: Deployment) -> LegacyKeys:
    old = LegacyKeys(deployment.keys.namespace)
    c = deployment.client
    c.set(old.epoch, 7)
    c.set(old.seq, 1234)
    c.set(old.term, "abcd")
    c.hset(old.resume, mapping={"token": '{"_data": "82AB"}', "epoch": "7", "saved_at": "1"})
    c.xadd(old.events_dlq, {"reason": "no_match"})
    c.set(old.event_seen("d1"), "1", px=60_000)
    c.hset(old.watcher("w-old"), mapping={"role": "standby"})
    return old


def test_dry_run_lists_and_changes_nothing(deployment: Deployment) -> None:
    """--dry-run names every durable old key and its new name, and writes nothing."""
    old = _old_deployment(deployment)
    run = deployment.scc("migrate-keys", "--dry-run")
    assert run.status == 0, run.err
    keys = deployment.keys
    for o, n in [(old.seq, keys.seq), (old.resume, keys.resume), (old.events_dlq, keys.events_dlq),
                 (old.event_seen("d1"), keys.event_seen("d1"))]:  # fmt: skip
        assert f"would copy {o} -> {n}" in run.out
    assert old.watcher("w-old") not in run.out, "heartbeats are ephemeral, not copied"
    assert deployment.client.exists(keys.seq, keys.resume, keys.epoch) == 0


def test_migration_copies_values_and_ttls_and_is_idempotent(deployment: Deployment) -> None:
    """Values (every type) and TTLs arrive under {ns}; a second run finds them equal."""
    old = _old_deployment(deployment)
    c, keys = deployment.client, deployment.keys
    run = deployment.scc("migrate-keys")
    assert run.status == 0, run.err
    assert c.get(keys.seq) == b"1234" and c.get(keys.epoch) == b"7" and c.get(keys.term) == b"abcd"
    assert c.hgetall(keys.resume) == c.hgetall(old.resume)
    assert c.xrange(keys.events_dlq) == c.xrange(old.events_dlq)
    assert 0 < c.pttl(keys.event_seen("d1")) <= 60_000
    assert c.exists(keys.leader, keys.watcher("w-old")) == 0
    again = deployment.scc("migrate-keys")
    assert again.status == 0 and "copied" not in again.out and f"same {old.seq}" in again.out
    assert c.exists(old.seq) == 1, "old keys are kept without --delete-old"


def test_differing_values_are_refused_unless_forced(deployment: Deployment) -> None:
    """Both layouts present with different seq: one refusal line, nothing copied; --force copies."""
    old = _old_deployment(deployment)
    c, keys = deployment.client, deployment.keys
    c.set(keys.seq, 99)
    refused = deployment.scc("migrate-keys")
    assert refused.status == 1
    assert refused.err.strip().count("\n") == 0
    assert refused.err.startswith("scc: refusing: 1 key(s) exist in both layouts")
    assert c.exists(keys.resume) == 0 and c.get(keys.seq) == b"99"
    forced = deployment.scc("migrate-keys", "--force", "--delete-old")
    assert forced.status == 0, forced.err
    assert c.get(keys.seq) == b"1234" and c.exists(old.seq, old.resume) == 0


def test_a_running_old_watcher_is_refused(deployment: Deployment) -> None:
    """An old-layout lease means an old watcher still runs: refused, told to stop them."""
    old = _old_deployment(deployment)
    deployment.client.set(old.leader, "w-old", px=10_000)
    run = deployment.scc("migrate-keys")
    assert run.status == 1 and "stop every watcher first" in run.err
    assert deployment.client.exists(deployment.keys.seq) == 0
    dry = deployment.scc("migrate-keys", "--dry-run")
    assert dry.status == 0 and "holds the old lease: stop it first" in dry.out
    assert f"would copy {old.seq}" in dry.out


def test_watcher_check_sees_old_layout_only(deployment: Deployment) -> None:
    """The start-up check names the old keys until migrated, then finds nothing."""
    old = _old_deployment(deployment)

    async def check() -> list[str]:
        client = aioredis.Redis.from_url(deployment.url)
        try:
            return await old_layout_only(client, deployment.keys)
        finally:
            await client.aclose()

    assert asyncio.run(check()) == [old.epoch, old.seq, old.term, old.resume]
    assert deployment.scc("migrate-keys").status == 0
    assert asyncio.run(check()) == []
