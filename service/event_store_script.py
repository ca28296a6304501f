"""The one Redis script that stores a routed blob event: de-duplicate, append, trim, count.

Why a module of its own: storing an event is several commands that must happen together
-- remember its id, append it, cap the stream -- and what trimming removed must be
counted at the moment it is removed (afterwards nobody can tell a read entry from an
unread one). Running them as one script makes each event's store atomic, so a retried
request (or two replicas receiving the same retry) cannot write an event twice.

Invariants kept by :data:`STORE_EVENT`:

* an event id already stored within the window (``KEYS[2]`` exists) is not appended
  again; the script returns the answer stored the first time and refreshes the key with
  ``PEXPIRE`` -- a write, so a ``WAIT`` that follows also covers the original append;
* the stream (``KEYS[1]``) keeps at most ``maxlen`` entries, none older than ``max_age``
  milliseconds by the Redis server's clock (stream ids are its milliseconds)
  and, when a byte cap is set, about ``max_bytes`` (``MEMORY USAGE`` estimate, taken
  every 64th entry, so a stream may overshoot by at most 63 entries); the
  oldest go first, exactly (``XTRIM MINID =``), and their number is returned;
* with a consumer group named and present on the stream, the removed entries the group
  had not been delivered yet (id above its ``last-delivered-id``) are counted apart.

Returns ``{stored, prior_answer or false, removed, removed_unread, length}``.
"""

from __future__ import annotations

from typing import Final

STORE_EVENT: Final = """
local window = tonumber(ARGV[1])
if window > 0 then
  local prior = redis.call('GET', KEYS[2])
  if prior then
    redis.call('PEXPIRE', KEYS[2], window)
    return {0, prior, 0, 0, redis.call('XLEN', KEYS[1])}
  end
end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[1], '*', unpack(fields))
if window > 0 then redis.call('SET', KEYS[2], ARGV[2], 'PX', window) end

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function before(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end

local maxlen, max_age, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local min_id = ''
if max_age > 0 then
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  min_id = string.format('%.0f', now_ms - max_age) .. '-0'
end
local length = redis.call('XLEN', KEYS[1])
if max_bytes > 0 and length > 1 and length % 64 == 0 then
  local used = redis.call('MEMORY', 'USAGE', KEYS[1]) or 0
  if used > max_bytes then
    maxlen = math.min(maxlen, math.max(1, math.floor(length * max_bytes / used)))
  end
end
local bound = min_id
if length > maxlen then
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', length - maxlen + 1)
  local kept = oldest[#oldest][1]
  if bound == '' or before(bound, kept) then bound = kept end
end
if bound == '' then return {1, false, 0, 0, length} end

local unread = 0
if ARGV[6] ~= '' then
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local info = {}
    for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
    if info['name'] == ARGV[6] and before(info['last-delivered-id'], bound) then
      unread = #redis.call('XRANGE', KEYS[1], '(' .. info['last-delivered-id'], '(' .. bound)
    end
  end
end
local removed = redis.call('XTRIM', KEYS[1], 'MINID', '=', bound)
return {1, false, removed, unread, length - removed}
"""
