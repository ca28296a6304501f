"""Exceptions of the service replica, one tree, each raised on purpose.

Library errors (PyMongo, redis-py) are chained with ``raise ... from e`` inside the
adapter that caught them (:mod:`service.storing`, :mod:`service.redis_feed`) and never
travel further as themselves. The tree::

    SccError                     (shared.errors)
    └── ServiceError
        ├── StoreError           MongoDB could not answer a read (lookups → HTTP 503)
        ├── FeedLost             the Redis pub/sub subscription is gone or never confirmed
        ├── ResyncRequired       the message stream can no longer be trusted (gap, bad
        │                        message, resubscription, ...); ``reason`` labels a metric
        ├── RootTaskFailed       a background task the replica cannot live without died
        └── ConfigsUnavailable   a blob event's config lookup failed transiently -> 503
    StoreUnavailable             (shared.errors)
    └── EventSinkUnavailable     neither events stream could be written -> 503, sender retries
    BodyError                    (service.event_schemas) a blob-event body is malformed -> 400
"""

from __future__ import annotations

from typing import Final

from shared.errors import SccError, StoreUnavailable

#: Every reason a replica reloads its cache; bounded, so it can label a metric.
RESYNC_REASONS: Final = (
    "broadcast",  # the watcher published a ``resync`` message
    "gap",  # a sequence number was skipped: messages were lost
    "heartbeat_ahead",  # a heartbeat carries a seq we never received
    "epoch_backwards",  # Redis lost its data (restart) or someone reset the epoch
    "seq_reset",  # the seq went back within one term: Redis lost its last writes
    "term_reset",  # a new leader term restarted the seq at or below ours
    "seq_conflict",  # a seq arrived again with another body: a replayed/forged message
    "bad_message",  # a message failed to decode or verify (a few per minute at most)
    "store_error",  # the previous reload failed on MongoDB; trying again
)


class ServiceError(SccError):
    """Root of every error the service package raises on purpose."""


class StoreError(ServiceError):
    """MongoDB could not answer a read (timeout, no primary, refused command)."""


class FeedLost(ServiceError):
    """The Redis subscription is gone: connection refused, reset, hung, or unconfirmed."""


class ResyncRequired(ServiceError):
    """The message stream can no longer be trusted; the cache must be reloaded.

    ``reason`` is one of :data:`RESYNC_REASONS`.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in RESYNC_REASONS:
            raise ValueError(f"unknown resync reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class RootTaskFailed(ServiceError):
    """A background task the replica cannot live without ended with an exception."""


class EventSinkUnavailable(StoreUnavailable):
    """Neither events stream could be written (Redis down, hung, or refusing): answer 503."""


class ConfigsUnavailable(ServiceError):
    """The resolver failed with a transient error (``retry_on``, e.g. MongoDB down): 503.

    Parking every event of a MongoDB outage in the dead-letter stream would need an
    operator to replay them; a 503 lets the sender retry once MongoDB is back.
    """
