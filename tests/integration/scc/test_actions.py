"""`scc resync`, `scc token show|reset` and `scc dlq` against a real redis-server."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from redis.client import PubSub

from scc.errors import LeaseMoved
from scc.publishing import Lease, publish_resync, read_lease
from shared.keys import Keys
from shared.messages import decode
from tests.integration.scc.conftest import Deployment
from tests.unit.scc.schema_check import validate

pytestmark = pytest.mark.integration

HMAC_KEY = "0123456789abcdef-test-key"


def received(pubsub: PubSub, wait: float = 2.0) -> list[Any]:
    """Every message delivered to ``pubsub``: the first within ``wait`` s, then any more."""
    messages = []
    message = pubsub.get_message(timeout=wait)
    while message is not None:
        messages.append(message)
        message = pubsub.get_message(timeout=0.2)
    return messages


def test_resync_publishes_one_fenced_message(deployment: Deployment) -> None:
    """With a leader, exactly one resync arrives, seq = previous + 1, the leader's epoch."""
    deployment.client.set(deployment.keys.seq, 41)
    epoch = deployment.leader("w-1")
    (subscriber,) = deployment.subscribe(1)
    run = deployment.scc("resync", "--reason", "config migration")
    assert run.status == 0, run.err
    assert "published resync: seq 42, epoch" in run.out and "to 1 subscriber(s)" in run.out
    (message,) = received(subscriber)
    decoded = decode(message["data"])
    assert (decoded.kind, decoded.seq, decoded.epoch) == ("resync", 42, epoch)
    assert decoded.reason is not None and decoded.reason.startswith("config migration (scc")
    assert int(deployment.client.get(deployment.keys.seq) or 0) == 42


def test_resync_is_signed_when_a_key_is_set(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SCC_MESSAGE_HMAC_KEY set, the message verifies against that key."""
    monkeypatch.setenv("SCC_MESSAGE_HMAC_KEY", HMAC_KEY)
    deployment.leader("w-1")
    (subscriber,) = deployment.subscribe(1)
    assert deployment.scc("resync").status == 0
    (message,) = received(subscriber)
    assert decode(message["data"], hmac_key=HMAC_KEY.encode()).kind == "resync"


def test_resync_without_leader_publishes_nothing(deployment: Deployment) -> None:
    """No lease holder: says so, exit 1, seq untouched and no message sent."""
    deployment.client.set(deployment.keys.seq, 5)
    deployment.replica("r-0")
    (subscriber,) = deployment.subscribe(1)
    run = deployment.scc("resync")
    assert run.status == 1
    assert run.err.startswith("scc: no leader holds {it-scc}:leader: nothing published")
    assert received(subscriber, wait=0.3) == []
    assert deployment.client.get(deployment.keys.seq) == b"5"


def stale_then_real(stale_epochs: int) -> Any:
    """A lease reader that reports an outdated epoch ``stale_epochs`` times, then the truth."""
    calls = {"n": 0}

    def read(client: redis.Redis, keys: Keys) -> Lease | None:
        calls["n"] += 1
        lease = read_lease(client, keys)
        assert lease is not None
        if calls["n"] <= stale_epochs:
            return Lease(instance_id=lease.instance_id, epoch=b"%d" % (int(lease.epoch) - 1))
        return lease

    return read


def test_resync_retries_once_when_the_fence_refuses(deployment: Deployment) -> None:
    """A lease that moved between reading and publishing is re-read and the publish retried."""
    deployment.client.set(deployment.keys.seq, 9)
    deployment.elect("w-1")
    deployment.client.incr(deployment.keys.epoch)  # a later term: epoch 2, stale reading 1
    (subscriber,) = deployment.subscribe(1)
    done = publish_resync(deployment.client, deployment.keys, reason="t", hmac_key=None,
                          lease_reader=stale_then_real(1))  # fmt: skip
    assert (done.seq, done.epoch, done.attempts) == (10, 2, 2)
    assert [decode(m["data"]).seq for m in received(subscriber)] == [10]


def test_resync_gives_up_after_two_refusals(deployment: Deployment) -> None:
    """Refused twice by the fence: LeaseMoved, nothing published, seq untouched."""
    deployment.client.set(deployment.keys.seq, 9)
    deployment.elect("w-1")
    deployment.client.incr(deployment.keys.epoch)
    (subscriber,) = deployment.subscribe(1)
    with pytest.raises(LeaseMoved):
        publish_resync(deployment.client, deployment.keys, reason="t", hmac_key=None,
                       lease_reader=stale_then_real(2))  # fmt: skip
    assert received(subscriber, wait=0.3) == []
    assert deployment.client.get(deployment.keys.seq) == b"9"


def test_token_show_prints_the_saved_token(deployment: Deployment) -> None:
    """`token show` prints token, saver, epoch and cluster time; --json fits the schema."""
    epoch = deployment.leader("w-1")
    deployment.save_token("w-1", epoch, token='{"_data": "826F00"}')
    run = deployment.scc("token", "show")
    assert run.status == 0
    assert f"by w-1 (epoch {epoch})" in run.out and '{"_data": "826F00"}' in run.out
    assert "points at cluster time" in run.out
    document = json.loads(deployment.scc("token", "show", "--json").out)
    validate(document, "#/$defs/resume")
    assert document["epoch"] == epoch and 0.2 < document["age_s"] < 30


def test_token_show_without_token_exits_1(deployment: Deployment) -> None:
    """No saved token: says so, exit 1 (JSON: null)."""
    run = deployment.scc("token", "show")
    assert run.status == 1 and "none saved" in run.out
    assert deployment.scc("token", "show", "--json").out.strip() == "null"


def test_token_reset_needs_yes(deployment: Deployment) -> None:
    """Without --yes the reset is refused (exit 1) and the token kept; with it, deleted."""
    epoch = deployment.leader("w-1")
    deployment.save_token("w-1", epoch)
    refused = deployment.scc("token", "reset")
    assert refused.status == 1
    assert refused.err.startswith("scc: refusing to delete {it-scc}:resume without --yes")
    assert deployment.client.exists(deployment.keys.resume) == 1
    done = deployment.scc("token", "reset", "--yes")
    assert done.status == 0 and "deleted {it-scc}:resume" in done.out
    assert deployment.client.exists(deployment.keys.resume) == 0
    assert deployment.scc("token", "reset", "--yes").out.startswith("nothing to delete")


def test_dlq_shows_newest_reasons(deployment: Deployment) -> None:
    """`dlq --count 2` shows the two newest entries with reasons; --json fits the schema."""
    for reason in ("no_matching_config", "config_disabled", "bad_subject"):
        deployment.client.xadd(deployment.keys.events_dlq, {"reason": reason, "url": "u"})
    run = deployment.scc("dlq", "--count", "2")
    assert run.status == 0
    assert "bad_subject" in run.out and "config_disabled" in run.out
    assert "no_matching_config" not in run.out and "newest 2 of 3" in run.out
    document = json.loads(deployment.scc("dlq", "--count", "2", "--json").out)
    validate(document, "#/$defs/dlq")
    assert [e["reason"] for e in document["newest"]] == ["bad_subject", "config_disabled"]
    assert document["newest"][0]["fields"] == {"url": "u"}
