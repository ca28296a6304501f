"""Scenario 2: the leader is SIGSTOPped past its lease, a standby takes over, then SIGCONT.

The dangerous moment is the wake-up: the paused process still believes it leads, may
hold changes it read but did not publish, and a resume token it did not save. Its own
invariants, checked over the wire rather than from its logs:

* it publishes nothing after waking: no message of its old epoch reaches the channel once
  it is resumed, and ``MONITOR`` shows no ``PUBLISH`` run by a script carrying that epoch;
* it does not move the resume token: ``MONITOR`` shows no script ``HSET {ns}:resume`` with
  its id and old epoch (a write overwritten a millisecond later would be invisible to
  polling, hence ``MONITOR``);
* epochs never go backwards, on the channel and in every replica's ``/health/cache``;
* it steps down to standby and keeps running;
* no replica reloads for any reason but a broadcast ``resync``: the successor continues
  the sequence, so the silence of the paused leader proves nothing was lost.
"""

from __future__ import annotations

import signal
import time

import orjson

from tests.chaos.observing import Command, CommandMonitor, replica_epoch_violations
from tests.chaos.rig import Rig
from tests.support.fleet import Child

NAME = "leader-pause"
TITLE = "2. leader SIGSTOP past its lease, then SIGCONT"
#: How long the woken ex-leader is watched (many heartbeats and lease renewals).
WATCH_AFTER_WAKE_S = 2.5


def _script_write(command: Command) -> bool:
    return (
        command.source.endswith("lua")
        and bool(command.args)
        and command.args[0].upper()
        in (
            "HSET",
            "PUBLISH",
        )
    )


def run(rig: Rig) -> None:
    """Pause the leader beyond its lease, resume it, and watch what it writes."""
    assert rig.observer is not None and rig.health is not None and rig.fleet.redis is not None
    leader, epoch = rig.wait_leader()
    time.sleep(rig.profile.burst_s)
    paused = rig.watcher(leader)
    paused.signal(signal.SIGSTOP)
    try:
        successor, new_epoch = rig.wait_leader(above_epoch=epoch)
        rig.check(successor != leader, f"paused leader {leader} still holds the lease")
        published = rig.observer.wait_for(lambda m: m.epoch == new_epoch, timeout=15.0)
        rig.check(
            published is not None, f"successor {successor} (epoch {new_epoch}) never published"
        )
        time.sleep(rig.profile.pause_beyond_lease_s)
        monitor = CommandMonitor(host="127.0.0.1", port=rig.fleet.redis.port, keep=_script_write)
        monitor.start()
    except BaseException:
        paused.signal(signal.SIGCONT)
        raise
    since = rig.observer.count()
    paused.signal(signal.SIGCONT)
    try:
        time.sleep(WATCH_AFTER_WAKE_S)
    finally:
        monitor.stop()
    _check_silence(rig, monitor, leader, epoch, since)
    _check_stepped_down(rig, paused, leader, epoch)
    for violation in replica_epoch_violations(rig.health.samples, resets=rig.redis_resets):
        rig.check(False, f"replica epoch went backwards: {violation}")
    rig.check_no_unproven_reloads("a leader pause that lost nothing")
    rig.note("paused_epoch", epoch)
    rig.note("successor_epoch", new_epoch)


def _check_silence(rig: Rig, monitor: CommandMonitor, leader: str, epoch: int, since: int) -> None:
    assert rig.observer is not None
    rig.check(not monitor.error, f"MONITOR failed: {monitor.error}")
    token_writes = [
        c
        for c in monitor.commands
        if c.args[0].upper() == "HSET"
        and len(c.args) > 1
        and c.args[1] == rig.keys.resume
        and _field(c.args, "saved_by") == leader
        and _field(c.args, "epoch") == str(epoch)
    ]
    rig.check(
        not token_writes,
        f"woken ex-leader {leader} moved the resume token: {[c.args[:6] for c in token_writes]}",
    )
    stale_publishes = [
        c
        for c in monitor.commands
        if c.args[0].upper() == "PUBLISH" and len(c.args) > 2 and _epoch_of(c.args[2]) == epoch
    ]
    rig.check(
        not stale_publishes, f"woken ex-leader {leader} published {len(stale_publishes)} messages"
    )
    late = [m for m in rig.observer.snapshot()[since:] if m.epoch == epoch and not m.injected]
    rig.check(not late, f"{len(late)} messages of the paused epoch {epoch} arrived after SIGCONT")
    rig.note("script_writes_watched", len(monitor.commands))


def _check_stepped_down(rig: Rig, paused: Child, leader: str, epoch: int) -> None:
    rig.check(paused.alive, f"woken ex-leader {leader} exited:\n{paused.log_text()[-2000:]}")
    status = rig.redis.hgetall(rig.keys.watcher(leader))
    still_leader = status.get("role") == "leader" and status.get("epoch") == str(epoch)
    rig.check(not still_leader, f"woken ex-leader {leader} still reports itself leader: {status}")


def _field(args: tuple[str, ...], name: str) -> str | None:
    pairs = args[2:]
    for i in range(0, len(pairs) - 1, 2):
        if pairs[i] == name:
            return pairs[i + 1]
    return None


def _epoch_of(payload: str) -> int | None:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    epoch = body.get("epoch") if isinstance(body, dict) else None
    return epoch if isinstance(epoch, int) else None
