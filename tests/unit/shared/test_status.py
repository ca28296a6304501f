"""Heartbeat hashes: what a process writes is what ``scc inspect`` reads back."""

from __future__ import annotations

from shared.status import ReplicaStatus, WatcherStatus, status_ttl_seconds


def test_replica_status_round_trips_through_redis_bytes() -> None:
    """A ReplicaStatus written as strings and read back as bytes is unchanged, None included."""
    status = ReplicaStatus(
        instance_id="r-1", ready=True, cache_size=12, last_seq=None, epoch=3, lag_seconds=0.25
    )
    raw = {k.encode(): v.encode() for k, v in status.to_hash().items()}
    assert ReplicaStatus.from_hash(raw) == status


def test_unknown_and_garbled_fields_do_not_break_reading() -> None:
    """Unknown fields are ignored and unparsable numbers read as None, never an exception."""
    parsed = WatcherStatus.from_hash({b"role": b"leader", b"epoch": b"x7", b"future": b"1"})
    assert parsed.role == "leader"
    assert parsed.epoch is None


def test_ttl_outlives_several_heartbeats() -> None:
    """The hash TTL covers at least five heartbeat intervals and never drops below 5 s."""
    assert status_ttl_seconds(100) == 5
    assert status_ttl_seconds(2000) == 10
