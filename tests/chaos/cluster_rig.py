"""The chaos rig with Redis Cluster: 3 masters, 3 replicas on loopback, ``redis+cluster://``.

Why a rig of its own: in a cluster the namespace lives on the one shard that owns the slot
of its ``{ns}`` hash tag, and a failover of that shard -- its replica promoted by the
cluster itself, no Sentinel -- must leave every cache exact. Every watcher and replica is
given the cluster URL; the harness's channel observer subscribes (``SSUBSCRIBE``) on
whichever master owns the slot at each (re)connect, and its lease reads go through
redis-py's ``RedisCluster``. Everything else -- writer, reader, event sender, the shared
checks of :meth:`~tests.chaos.rig.Rig.settle` -- is the ordinary rig's.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

from tests.chaos.observing import ChannelObserver
from tests.chaos.profile import HMAC_KEY
from tests.chaos.rig import Rig
from tests.support.cluster_fleet import _ClusterAsServer
from tests.support.redis_cluster import RedisClusterRig
from tests.support.redis_server import redis_binary


class ShardChannelObserver(ChannelObserver):
    """The channel observer on the shard channel, re-pointed at the slot owner every session."""

    shard_prefix = "s"

    def __init__(self, cluster: RedisClusterRig, **kwargs: Any) -> None:
        self._cluster = cluster
        self._key = str(kwargs["channel"])
        super().__init__(redis_url=self._owner_url(), **kwargs)

    def _owner_url(self) -> str:
        try:
            return f"redis://127.0.0.1:{self._cluster.owner_of(self._key).port}/0"
        except RuntimeError as e:  # no live node answers right now
            raise redis.ConnectionError(str(e)) from e

    def _session(self) -> None:
        self._url = self._owner_url()
        super()._session()


class ClusterRig(Rig):
    """:class:`Rig` on a :class:`RedisClusterRig`; the scenario reaches it as ``cluster``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("redis-server is not on PATH (apt-get install -y redis-server)")
        self.cluster = RedisClusterRig(binary)
        self.fleet.start_redis = self._start_cluster  # type: ignore[method-assign]
        self._cluster_client: RedisCluster | None = None

    def _start_cluster(self) -> Any:
        self.cluster.start()
        server = _ClusterAsServer(self.cluster)
        self.fleet.redis = server  # type: ignore[assignment]  # duck-typed: url + close
        return server

    def start(self) -> ClusterRig:
        """The ordinary start, then an observer on the shard channel's owner."""
        super().start()
        assert self.observer is not None
        self.observer.stop()
        self.observer = ShardChannelObserver(
            self.cluster, channel=self.keys.invalidations, hmac_key=HMAC_KEY.encode()
        )
        self.observer.start()
        return self

    @property
    def redis_url(self) -> str:
        """The slot owner's plain URL (the fleet itself uses the cluster URL)."""
        return f"redis://127.0.0.1:{self.cluster.owner_of(self.keys.seq).port}/0"

    @property
    def redis(self) -> redis.Redis:
        """A cluster client (str responses); every key of the namespace is on one slot."""
        if self._cluster_client is None:
            self._cluster_client = RedisCluster(
                startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in self.cluster.nodes],  # type: ignore[no-untyped-call]
                socket_timeout=5,
                socket_connect_timeout=2,
                decode_responses=True,
            )
        return self._cluster_client  # type: ignore[return-value]  # same commands, one slot

    def close(self) -> None:
        """The ordinary close; the cluster goes with the fleet (and once more, to be sure)."""
        try:
            super().close()
            if self._cluster_client is not None:
                self._cluster_client.close()
        finally:
            self.cluster.close()
