"""``scc resync``: publish one ``resync`` message through the leader's fenced path.

Invariant: the CLI never publishes around the fence. It reads ``{ns}:leader`` and
``{ns}:epoch`` and runs the same :data:`shared.scripts.PUBLISH` script the leader runs,
on that leader's behalf: the script takes the next ``{ns}:seq`` and publishes in one step
(so seq stays gap-free), and refuses if the lease moved in between. A refusal is retried
once with a fresh reading of the lease; a second refusal is reported, never forced.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import redis

from scc.errors import CliError, LeaseMoved, NoLeader
from shared.channels import sharded
from shared.keys import Keys
from shared.messages import Message, encode_body
from shared.scripts import FENCED_OUT, PUBLISH, PUBLISH_SHARDED

#: Attempts at publishing before giving up when the fence keeps refusing.
ATTEMPTS: Final = 2


@dataclass(frozen=True, slots=True)
class Lease:
    """The lease as read: exact bytes, because the script compares them byte for byte."""

    instance_id: bytes
    epoch: bytes


@dataclass(frozen=True, slots=True)
class Published:
    """What one successful ``resync`` publish did."""

    seq: int
    epoch: int
    leader: str
    receivers: int
    """Subscribers the message was delivered to (``PUBLISH``'s reply)."""
    attempts: int


def read_lease(client: redis.Redis, keys: Keys) -> Lease | None:
    """The current leader and epoch, or ``None`` when nobody holds the lease."""
    leader, epoch = client.mget([keys.leader, keys.epoch])
    if leader is None or epoch is None:
        return None
    return Lease(instance_id=_raw(leader), epoch=_raw(epoch))


def _raw(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def publish_resync(
    client: redis.Redis,
    keys: Keys,
    *,
    reason: str,
    hmac_key: bytes | None,
    clock: Callable[[], float] = time.time,
    lease_reader: Callable[[redis.Redis, Keys], Lease | None] = read_lease,
) -> Published:
    """Publish ``resync`` on behalf of the current leader; raise if there is none.

    Raises :class:`NoLeader` when the lease is free (nothing is published) and
    :class:`LeaseMoved` when the fence refused :data:`ATTEMPTS` times.
    """
    script = client.register_script(PUBLISH_SHARDED if sharded(client) else PUBLISH)
    for attempt in range(1, ATTEMPTS + 1):
        lease = lease_reader(client, keys)
        if lease is None:
            raise NoLeader(
                f"no leader holds {keys.leader}: nothing published (a leader that starts "
                "without a resume token publishes resync by itself)"
            )
        try:
            epoch = int(lease.epoch)
        except ValueError:
            raise CliError(
                f"{keys.epoch} holds {lease.epoch!r}, not an integer: nothing published"
            ) from None
        message = Message(kind="resync", seq=0, epoch=epoch, reason=reason, published_at=clock())
        body = encode_body(message, hmac_key=hmac_key)
        result: Any = script(
            keys=[keys.leader, keys.epoch, keys.seq],
            args=[lease.instance_id, lease.epoch, keys.invalidations, body, "1"],
        )
        if result != FENCED_OUT:
            seq, receivers = result
            return Published(
                seq=int(seq),
                epoch=epoch,
                leader=lease.instance_id.decode(errors="replace"),
                receivers=int(receivers),
                attempts=attempt,
            )
    raise LeaseMoved(
        f"the lease on {keys.leader} changed hands while publishing, {ATTEMPTS} times in a "
        "row: nothing published; run scc resync again once a leader is stable"
    )
