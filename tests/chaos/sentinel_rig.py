"""The chaos rig with Redis under Sentinel: 1 primary, 2 replicas, 3 sentinels on loopback.

Why a rig of its own: a Redis *failover* -- a replica promoted while the old primary dies,
keeps writing for a while, or is cut off -- is not a Redis restart, and the fleet must
get through it reaching Redis only by ``redis+sentinel://``. Every watcher and replica is
given the group's Sentinel URL; the harness itself (channel observer, lease reads) asks
the sentinels for the current primary on every (re)connect, so its view follows the
failover too. Everything else -- writer, reader, event sender, the shared checks of
:meth:`~tests.chaos.rig.Rig.settle` -- is the ordinary rig's.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.sentinel import Sentinel

from tests.chaos.observing import ChannelObserver
from tests.chaos.profile import HMAC_KEY
from tests.chaos.rig import Rig
from tests.support.redis_server import redis_binary
from tests.support.sentinel_fleet import _GroupAsServer
from tests.support.sentinel_group import MASTER_NAME, SentinelGroup

#: Sentinel's own detection time in the chaos runs.
DOWN_AFTER_MS = 1000


class SentinelChannelObserver(ChannelObserver):
    """The channel observer, re-pointed at the current primary on every session."""

    def __init__(self, group: SentinelGroup, **kwargs: Any) -> None:
        super().__init__(redis_url=_primary_url(group), **kwargs)
        self._group = group

    def _session(self) -> None:
        try:
            self._url = _primary_url(self._group)
        except RuntimeError as e:  # no sentinel names a primary right now
            raise redis.ConnectionError(str(e)) from e
        super()._session()


def _primary_url(group: SentinelGroup) -> str:
    return f"redis://127.0.0.1:{group.primary.port}/0"


class SentinelRig(Rig):
    """:class:`Rig` on a :class:`SentinelGroup`; the scenario reaches the group as ``group``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("redis-server is not on PATH (apt-get install -y redis-server)")
        self.group = SentinelGroup(binary, down_after_ms=DOWN_AFTER_MS)
        self.fleet.start_redis = self._start_group  # type: ignore[method-assign]
        self._sentinel_client: redis.Redis | None = None

    def _start_group(self) -> Any:
        self.group.start()
        server = _GroupAsServer(self.group)
        self.fleet.redis = server  # type: ignore[assignment]  # duck-typed: url + close
        return server

    def start(self) -> SentinelRig:
        """The ordinary start, then an observer that follows the primary."""
        super().start()
        assert self.observer is not None
        self.observer.stop()
        self.observer = SentinelChannelObserver(
            self.group, channel=self.keys.invalidations, hmac_key=HMAC_KEY.encode()
        )
        self.observer.start()
        return self

    @property
    def redis_url(self) -> str:
        """The current primary's plain URL (the fleet itself uses the Sentinel URL)."""
        return _primary_url(self.group)

    @property
    def redis(self) -> redis.Redis:
        """A client (str responses) of whatever primary the sentinels name."""
        if self._sentinel_client is None:
            hosts = [("127.0.0.1", s.port) for s in self.group.sentinels]
            sentinels = Sentinel(hosts, socket_timeout=2)  # type: ignore[no-untyped-call]
            self._sentinel_client = sentinels.master_for(  # type: ignore[no-untyped-call]
                MASTER_NAME, socket_timeout=5, socket_connect_timeout=2, decode_responses=True
            )
        assert self._sentinel_client is not None
        return self._sentinel_client

    def close(self) -> None:
        """The ordinary close; the group goes with the fleet (and once more, to be sure)."""
        try:
            super().close()
        finally:
            self.group.close()
