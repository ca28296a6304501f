"""Self-tests of the chaos suite's checks: each must report a fake violation.

The checks -- monotonic reads and bounded staleness (tests.chaos.consistency), channel
ordering, replica epochs, the digest, metric deltas -- decide whether a scenario fails;
a check that can never fail would let every defect through. These feed them small
hand-made histories with and without a violation, and pin the table columns and the
``ok`` verdict that the scenario tests assert on.
"""

from __future__ import annotations

import io

from tests.chaos.configs import key_of, with_key
from tests.chaos.consistency import monotonic_violations, stale_reads
from tests.chaos.digesting import canonical, digest_of
from tests.chaos.observing import (
    HealthSample,
    Seen,
    _monitor_args,
    ordering_violations,
    replica_epoch_violations,
)
from tests.chaos.probing import Metrics, delta, parse_metrics
from tests.chaos.reading import Read
from tests.chaos.reporting import HEADER, RunResult, print_table
from tests.chaos.writer import Write


def _read(at: float, status: int, rev: int | None = None, *, replica: str = "r-1") -> Read:
    return Read(replica, "k", at, at + 0.01, status, rev)


def _write(rev: int, at: float, kind: str = "upsert", *, certain: bool = True) -> Write:
    return Write("k", rev, kind, at - 0.01, at, certain)


def test_monotonic_check_reports_a_lower_rev_with_replica_key_revs_and_times() -> None:
    """A replica answering rev 5 after rev 7 is one violation naming both revs and times."""
    reads = [_read(100.0, 200, 3), _read(101.0, 200, 7), _read(102.5, 200, 5)]
    assert monotonic_violations(reads, t0=100.0) == [
        "r-1 k: rev 7 at +1.000 s then rev 5 at +2.500 s"
    ]


def test_monotonic_check_allows_repeats_new_versions_and_other_replicas() -> None:
    """Same rev again, a higher rev, a 404 first, or a lower rev on another replica: all fine."""
    reads = [
        _read(1.0, 404),
        _read(2.0, 200, 4),
        _read(3.0, 200, 4),
        _read(4.0, 404),
        _read(5.0, 200, 9),  # created again after the delete: a new version
        _read(6.0, 200, 2, replica="r-2"),
    ]
    assert monotonic_violations(reads) == []


def test_monotonic_check_reports_a_deleted_version_served_again() -> None:
    """Rev 4, then 404 (deleted), then rev 4 again: the deleted config came back."""
    reads = [_read(1.0, 200, 4), _read(2.0, 404), _read(3.0, 200, 4)]
    found = monotonic_violations(reads)
    assert found == ["r-1 k: rev 4 at +1.000 s, 404 at +2.000 s, then rev 4 at +3.000 s"]


def test_monotonic_check_ignores_unanswered_reads() -> None:
    """A 503 or no answer between two versions neither breaks nor hides the ordering."""
    reads = [_read(1.0, 200, 4), _read(2.0, 503), _read(3.0, 0), _read(4.0, 200, 3)]
    assert len(monotonic_violations(reads)) == 1


def test_stale_read_after_the_bound_is_reported_and_within_it_is_not() -> None:
    """An older version read 3.5 s after the write (bound 3 s) is stale; at 2 s it is not."""
    writes = [_write(1, 10.0), _write(2, 20.0)]
    reads = [_read(22.0, 200, 1), _read(23.5, 200, 1), _read(24.0, 200, 2), _read(25.0, 200, 3)]
    found = stale_reads(reads, writes, bound_s=3.0, t0=10.0)
    assert found == [
        "r-1 k: answered rev 1 at +13.500 s, 3.50 s after upsert rev 2 was acknowledged "
        "(bound 3.0 s)"
    ]


def test_stale_read_after_a_delete_is_a_served_deleted_config() -> None:
    """After a delete only a 404 or a newer version will do; the old version is stale."""
    writes = [_write(1, 10.0), _write(2, 11.0, "delete"), _write(5, 30.0)]
    reads = [_read(15.0, 200, 1), _read(15.1, 404), _read(31.0, 200, 5)]
    found = stale_reads(reads, writes, bound_s=3.0)
    assert len(found) == 1 and "answered rev 1" in found[0] and "delete rev 2" in found[0]


def test_stale_check_accepts_a_404_from_a_delete_in_flight_or_uncertain() -> None:
    """A 404 is fine once a newer delete started, even one that failed (maybe applied)."""
    writes = [_write(1, 10.0), Write("k", 2, "delete", 19.0, 19.5, certain=False)]
    assert stale_reads([_read(20.0, 404)], writes, bound_s=3.0) == []
    assert len(stale_reads([_read(18.0, 404)], writes, bound_s=3.0)) == 1


def test_stale_check_never_requires_an_uncertain_write() -> None:
    """A write that failed may not have been applied: the version before it is not stale."""
    writes = [_write(1, 10.0), Write("k", 2, "upsert", 11.0, 11.1, certain=False)]
    assert stale_reads([_read(20.0, 200, 1)], writes, bound_s=3.0) == []


def test_ordering_check_restarts_the_count_at_a_harness_seq_break() -> None:
    """A seq moved back by the harness is no gap after the break, and still one without it."""
    seen = [
        Seen(0.0, 1.0, "a", 1, 10, seq=20, epoch=1, kind="upsert"),
        Seen(0.0, 3.0, "a", 1, 10, seq=13, epoch=1, kind="upsert"),
    ]
    assert ordering_violations(seen, breaks=[2.0]) == []
    assert ordering_violations(seen) == ["seq gap on the channel: 20 then 13 (upsert, epoch 1)"]
    # After the new start the count is strict again: a heartbeat, then a skipped seq.
    later = [
        Seen(0.0, 4.0, "a", 1, 10, seq=13, epoch=1, kind="heartbeat"),
        Seen(0.0, 5.0, "a", 1, 10, seq=15, epoch=1, kind="upsert"),
    ]
    assert ordering_violations(seen + later, breaks=[2.0]) == [
        "seq gap on the channel: 13 then 15 (upsert, epoch 1)"
    ]


def test_a_run_with_a_stale_read_or_monotonic_violation_fails_and_shows_in_the_table() -> None:
    """RunResult.ok is False on either finding, and the table prints the new columns."""
    clean = RunResult("s", 1, "short", full_reloads=2)
    stale = RunResult("s", 2, "short", stale_reads=1)
    backwards = RunResult("t", 1, "short", monotonic=3)
    assert clean.ok and not stale.ok and not backwards.ok
    out = io.StringIO()
    print_table([clean, stale, backwards], out)
    lines = out.getvalue().splitlines()
    assert all(column in lines[0] for column in HEADER)
    assert lines[2].split() == ["s", "2", "0", "0", "1", "2", "0", "-", "-", "FAILED", "1/2"]
    assert lines[3].split()[:4] == ["t", "1", "0", "3"]


def test_dotted_key_field_is_stored_and_read_back_nested() -> None:
    """``meta.sid`` puts the key under ``meta`` next to its other fields, and reads it back."""
    doc = with_key({"meta": {"owner": "ops"}, "rev": 1}, "meta.sid", "k-1")
    assert doc == {"meta": {"sid": "k-1", "owner": "ops"}, "rev": 1}
    assert key_of(doc, "meta.sid") == "k-1"
    assert key_of({"meta": "flat"}, "meta.sid") is None
    assert key_of(with_key({}, "source_id", "k-2"), "source_id") == "k-2"


def _seen(
    seq: int, epoch: int, kind: str = "upsert", *, session: int = 1, run_id: str = "a"
) -> Seen:
    return Seen(0.0, 0.0, run_id, session, 10, seq=seq, epoch=epoch, kind=kind)


def test_ordering_check_flags_gaps_and_epoch_regressions() -> None:
    """The channel check reports a skipped seq, a backwards epoch and a heartbeat off the seq."""
    good = [_seen(1, 1), _seen(1, 1, "heartbeat"), _seen(2, 2), _seen(3, 2, "delete")]
    assert ordering_violations(good) == []
    assert ordering_violations([_seen(1, 1), _seen(3, 1)]) == [
        "seq gap on the channel: 1 then 3 (upsert, epoch 1)"
    ]
    assert "epoch went backwards" in ordering_violations([_seen(1, 2), _seen(2, 1)])[0]
    assert (
        "heartbeat carries seq 5" in ordering_violations([_seen(1, 1), _seen(5, 1, "heartbeat")])[0]
    )
    # A new Redis (run id) or a new subscription session starts the count again.
    assert (
        ordering_violations(
            [_seen(7, 3), _seen(1, 1, run_id="b"), _seen(9, 1, run_id="b", session=2)]
        )
        == []
    )


def test_replica_epoch_check_allows_only_redis_resets() -> None:
    """A replica's epoch may drop only across a recorded Redis reset."""
    samples = [HealthSample(1.0, "r-1", True, 5, 3), HealthSample(2.0, "r-1", True, 6, 2)]
    assert replica_epoch_violations(samples, resets=[]) == ["r-1: leader_epoch 3 then 2"]
    assert replica_epoch_violations(samples, resets=[1.5]) == []


def test_monitor_lines_are_parsed_with_escapes() -> None:
    """MONITOR's quoted arguments (with escaped quotes) come back as the strings sent."""
    line = '"HSET" "chaos:resume" "token" "{\\"_data\\": \\"82\\"}" "saved_by" "w-1"'
    assert _monitor_args(line) == (
        "HSET",
        "chaos:resume",
        "token",
        '{"_data": "82"}',
        "saved_by",
        "w-1",
    )


def test_metrics_parse_and_delta_by_label() -> None:
    """Prometheus text is parsed per series and differences are taken per label value."""
    before = Metrics(
        parse_metrics('# HELP x\nscc_x_total{reason="gap"} 1.0\nscc_x_total{reason="silent"} 2.0\n')
    )
    after = Metrics(
        parse_metrics('scc_x_total{reason="gap"} 4.0\nscc_x_total{reason="silent"} 2.0\nscc_y 7\n')
    )
    assert delta(after, before, "scc_x_total", "reason") == {"gap": 3.0, "silent": 0.0}
    assert delta(after, before, "scc_x_total") == 3.0
    assert after.total("scc_y") == 7.0


def test_digest_is_order_free_and_sensitive_to_values() -> None:
    """Canonical documents ignore field order; any value change changes the digest."""
    assert canonical({"a": 1, "b": {"c": 2}}) == canonical({"b": {"c": 2}, "a": 1})
    base = {"k": canonical({"a": 1})}
    assert digest_of(base) != digest_of({"k": canonical({"a": 2})})
    assert digest_of(base) != digest_of({**base, "k2": canonical({})})
