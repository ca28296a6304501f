"""The ``--help`` texts of every ``scc`` command, kept apart so the parser stays readable.

Invariant: what ``--help`` says a mark means is what :mod:`scc.judging` does; the
thresholds quoted here are the ones :meth:`scc.snapshot.Rules.from_settings` derives.
"""

from __future__ import annotations

from typing import Final

EXIT_STATUS: Final = """\
exit status:
  0  everything checked is in sync
  1  something lags or is silent (each one named in the output)
  2  Redis cannot be reached, rejects the credentials or a command,
     the configuration is invalid, or nothing is deployed under the namespace
     (no leader, watcher or replica key)
"""

MARKS: Final = """\
marks (T = SCC_HEARTBEAT_INTERVAL_MS, default 1 s; ages use the Redis server's clock):
  silent      the process has not rewritten its hash for more than 3 T. Its key
              expires later (TTL max(5 s, 5 T)); a replica gone that long can no longer
              be named and only shows as a subscriber difference on the channel.
  not-ready   the replica reports ready=0: warming up or reloading, not serving yet.
  lagging     a ready replica whose last_seq trails seq by more than --lag-tolerance
              messages AND which, at its last report, either had change_stream_active=0
              or had heard no message (the leader heartbeats every T) for more than 3 T.
              Trailing seq while still hearing messages only means its hash is up to one
              heartbeat old while seq moves on, and is not marked.
  stalled     the lease holder's change stream returned no batch (event or empty) for
              more than 3 x max(T, SCC_MAX_AWAIT_MS).
  no-leader   something is deployed but no watcher holds the lease: nothing follows the
              change stream (expected for at most SCC_LEADER_TTL_MS during a failover).
  leader-unregistered  the lease holder writes no watcher heartbeat hash.
  subscribers PUBSUB NUMSUB on the channel differs from the number of registered
              replicas: fewer = a registered replica is not listening (dead or
              disconnected); more = an unregistered subscriber (a replica whose heartbeat
              stopped, or a debugging client such as redis-cli SUBSCRIBE).
  unreadable  a key under the namespace holds the wrong type or a malformed number.
"""

INSPECT_FIELDS: Final = """\
fields:
  leader        instance holding {ns}:leader, the current epoch ({ns}:epoch, the fencing
                token, +1 per election) and the lease time left (PTTL).
  seq           {ns}:seq, the number of the last published message (gap-free).
  resume token  {ns}:resume: when it was saved and by which instance/epoch, the MongoDB
                cluster time it points at, and the token itself.
  channel       subscribers of {ns}:invalidations against registered replicas.
  events        lengths of {ns}:events:accepted and {ns}:events:dlq.
  watchers      instance (* = lease holder), marks, role, epoch it saw, stream lag (lease
                holder: time since its change stream last returned a batch), age of its
                last event and last empty batch, messages published, resyncs, elections,
                poison documents (could not be carried in a message, sent key-only; the
                last one named), last error, age of its heartbeat hash, version.
  replicas      see `scc replicas --help`.
  dead letters  the newest entries of {ns}:events:dlq with their reasons.
"""

REPLICA_FIELDS: Final = """\
replica fields:
  instance      the replica's id ({ns}:replica:<id>)
  state         ok, or its marks (see below)
  ready         yes once warm and subscribed (its /health/ready answers 200)
  stream        active while it hears the leader's heartbeats; inactive = lookups fall
                back to MongoDB
  cache size    configs held in memory
  last seq      seq of the last message it applied
  behind        seq - last seq (its hash may be up to one heartbeat old)
  last message  age of the last message it received (heartbeats included)
  heartbeat     age of its hash (rewritten every heartbeat interval)
  epoch         leader epoch of the last message it received
  warmed at     when its last full load finished
  resyncs       full reloads since it started
  version       its software version
"""

TOKEN_FIELDS: Final = """\
fields:
  saved         when the leader last saved the token ({ns}:resume saved_at) and its age
  by            instance id and epoch of the leader that saved it
  cluster time  MongoDB cluster time the token points at, and how long ago that was
  token         the change-stream resume token (extended JSON), passed as resumeAfter /
                startAfter by the next leader
exit status: 0 shown, 1 no token saved, 2 Redis unreachable or bad configuration.
"""

TOKEN_RESET: Final = """\
Delete {ns}:resume. A watcher that becomes leader without a token starts its change
stream at "now" and publishes resync (every replica reloads). Use it when MongoDB refuses
the stored token or it points into lost history; a leader that is running keeps its
stream and writes its current token again at its next save, so stop the watchers first
(or follow with `scc resync`) if you need the reload now.
exit status: 0 deleted (or nothing to delete), 1 refused without --yes, 2 Redis error.
"""

MIGRATE_KEYS: Final = """\
Every key now starts with the hash tag {ns} (one Redis Cluster slot per namespace).
Copies what a deployment from before kept under ns:... -- epoch, seq, term, resume
token, failover record, event streams, event de-duplication keys (with their TTL) -- to
{ns}:... with DUMP/RESTORE. The lease and heartbeat hashes are not copied (running
processes rewrite them). Stop every watcher first: it refuses while ns:leader exists.
Idempotent (keys already copied compare equal); a new key that differs from its old twin
is never replaced without --force. Old keys are kept unless --delete-old.
exit status: 0 done (or nothing to do), 1 refused, 2 Redis error.
"""

RESYNC: Final = """\
Publish one `resync` message on {ns}:invalidations on behalf of the current leader,
through the same fenced script the leader uses: it takes the next seq (no gap) and is
refused if the lease changed hands meanwhile (retried once with a fresh reading). Every
replica reloads the whole collection (after a random jitter).
The message is signed with SCC_MESSAGE_HMAC_KEY when set (replicas that have the key
reject unsigned messages).
exit status: 0 published, 1 no leader or the lease kept moving (nothing published),
2 Redis error or bad configuration.
"""

DLQ_FIELDS: Final = """\
fields:
  id       stream entry id (milliseconds-sequence)
  at       when it was dead-lettered (from the id)
  reason   why the replica did not hand the blob event on
  event    the other fields the replica stored with it
exit status: 0 shown, 2 Redis error or bad configuration.
"""

ENVIRONMENT: Final = """\
environment: SCC_REDIS_URL, SCC_NAMESPACE (overridden by --redis-url, --namespace),
SCC_HEARTBEAT_INTERVAL_MS, SCC_MAX_AWAIT_MS (thresholds), SCC_MESSAGE_HMAC_KEY (resync).
"""
