"""Lua scripts that make every leader write fenced and every sequence number gap-free.

Each script first checks that ``{ns}:leader`` still names the caller *and* that
``{ns}:epoch`` still equals the caller's term, so a paused ex-leader that wakes up after
its lease expired can neither publish nor move the resume token. ``PUBLISH`` and the
``INCR`` of ``{ns}:seq`` happen in the same script, so a sequence number is never taken
without its message going out (and never sent twice).

The message body is encoded in Python without ``seq``; the script splices
``"seq":N`` in front of the body's other fields. A batch message (:mod:`shared.batches`)
takes ``n`` consecutive seqs in one ``INCRBY`` and gets the first of them spliced in. The
pub/sub command is named once, in :data:`PUBSUB_COMMAND`. Scripts run through redis-py's
``Script`` objects (EVALSHA with a reload on NOSCRIPT), so a restarted Redis that lost its
script cache is handled transparently.
"""

from __future__ import annotations

from typing import Final

#: Return value of a fenced script whose caller no longer holds the lease.
FENCED_OUT: Final = -1
#: The command that sends a message to the replicas (the only place it is named).
PUBSUB_COMMAND: Final = "PUBLISH"

_FENCE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return -1 end
"""

#: KEYS: leader, epoch. ARGV: instance id, ttl ms.
#: Returns the new epoch (fencing token) when the lease was free, else 0.
ACQUIRE: Final = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""

#: KEYS: leader, epoch. ARGV: instance id, epoch, ttl ms. Returns 1, or -1 when fenced out.
RENEW: Final = (
    _FENCE
    + """
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""
)

#: KEYS: leader, epoch. ARGV: instance id, epoch. Deletes the lease; 1, or -1 if not ours.
RELEASE: Final = (
    _FENCE
    + """
redis.call('DEL', KEYS[1])
return 1
"""
)

#: KEYS: leader, epoch, seq, term. ARGV: instance id, epoch, channel, body (JSON object
#: without seq), how many seqs to take -- "1" the next one, "n" the next n of a batch
#: (the first is spliced in), "0" to repeat the current one (heartbeat) --, term id, floor.
#: Records the term id next to seq (replicas read both in one MGET at start-up, so they
#: know which term their starting seq belongs to). ``floor`` is the last
#: seq this term was given: if ``{ns}:seq`` is below it, Redis lost its last writes (a
#: failover to a replica that lagged) and the counter is put back to it first, so the
#: sequence replicas already saw continues instead of repeating numbers.
#: Returns {seq spliced in (a batch's first), receivers}, or -1 when fenced out.
PUBLISH: Final = (
    _FENCE
    + """
local seq
if ARGV[7] then
  local floor = tonumber(ARGV[7])
  if tonumber(redis.call('GET', KEYS[3]) or '0') < floor then
    redis.call('SET', KEYS[3], ARGV[7])
  end
end
local take = tonumber(ARGV[5])
if take > 0 then
  seq = redis.call('INCRBY', KEYS[3], take) - take + 1
else
  seq = tonumber(redis.call('GET', KEYS[3]) or '0')
end
if ARGV[6] then redis.call('SET', KEYS[4], ARGV[6]) end
local body = ARGV[4]
local msg = '{"seq":' .. string.format('%d', seq) .. ',' .. string.sub(body, 2)
local receivers = redis.call('"""
    + PUBSUB_COMMAND
    + """', ARGV[3], msg)
return {seq, receivers}
"""
)

#: KEYS: leader, epoch, resume. ARGV: instance id, epoch, token (extended JSON),
#: cluster time (or ""), saved-at (unix seconds). Returns 1, or -1 when fenced out.
SAVE_TOKEN: Final = (
    _FENCE
    + """
redis.call('HSET', KEYS[3], 'token', ARGV[3], 'epoch', ARGV[2], 'cluster_time', ARGV[4],
           'saved_at', ARGV[5], 'saved_by', ARGV[1])
return 1
"""
)


def sharded(script: str) -> str:
    """``script`` with its ``PUBLISH`` replaced by ``SPUBLISH``, for Redis Cluster.

    In a cluster the invalidation channel is a shard channel (:mod:`shared.channels`):
    ``SPUBLISH`` delivers only within the shard that owns the channel's slot, which is the
    slot of every key the script touches (all share the ``{ns}`` hash tag), so the script
    still runs on one node and publishes where the replicas subscribed. Derived from the
    plain script so the two can never drift apart.
    """
    plain = "redis.call('PUBLISH',"
    if plain not in script:
        raise ValueError("the script has no redis.call('PUBLISH', ...) to shard")
    return script.replace(plain, "redis.call('SPUBLISH',")


#: :data:`PUBLISH` for Redis Cluster (``SPUBLISH``); same KEYS, ARGV and reply.
PUBLISH_SHARDED: Final = sharded(PUBLISH)
