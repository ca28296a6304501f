"""The one Redis script that stores routed blob events: de-duplicate, append, trim, count.

Why a module of its own: storing an event is several commands that must happen together
-- remember its id, append it, cap the stream -- and what trimming removed must be
counted at the moment it is removed (afterwards nobody can tell a read entry from an
unread one). Running them as one script makes the store atomic, so a retried request (or
two replicas receiving the same retry) cannot write an event twice. One call stores a
whole batch (every event of a request, accepted and dead-lettered, and those of the
requests that arrived in the same event-loop tick): the round trip and the script's
fixed cost are paid once per batch, not once per event.

Call: ``KEYS = [accepted stream, dead-letter stream, seen key…]`` -- every key the script
touches is named in ``KEYS`` (so all of them must share one cluster slot);
``ARGV = [window_ms, maxlen, max_age_ms, max_bytes, group, entries]``, ``entries`` one
JSON array holding, per entry, ``[stream (1|2), seen (KEYS index, 0: no
de-duplication), answer, [field, value, …]]`` (strings): one argument instead of ~20 per
event, because encoding each argument is what a client spends most on for a batch.

Invariants kept by :data:`STORE_EVENTS`:

* entries are handled in order; an entry whose seen key exists (an event id stored
  within the window, by an earlier call *or an earlier entry of this one*) is not
  appended again; its reply is the answer stored the first time, and the key is
  refreshed with ``PEXPIRE`` -- a write, so a ``WAIT`` that follows also covers the
  original append;
* an ``XADD`` Redis refuses (e.g. the key holds another type) fails that entry alone: its
  seen key is not set, the other entries are stored;
* after the appends, each stream written keeps at most ``maxlen`` entries, none older
  than ``max_age`` milliseconds by the Redis server's clock (stream ids are its
  milliseconds; without a consumer group to count for, the trim reads no entry) and,
  when a byte cap is set, about ``max_bytes`` (``MEMORY USAGE``
  estimate, taken when the stream's length crossed a multiple of 64, so a stream may
  overshoot by at most 63 entries plus one batch); the oldest go first, exactly
  (``XTRIM MINID =``), and their number is returned;
* with a consumer group named and present on the stream, the removed entries the group
  had not been delivered yet (id above its ``last-delivered-id``) are counted apart.

Returns ``{entries, streams}``: ``entries`` is flat, two items per entry -- ``1, nil``
(stored), ``0, prior answer`` (duplicate) or ``-1, error`` (refused); ``streams`` is
``removed, removed_unread, length`` for the accepted then the dead-letter stream, with
``length`` -1 for a stream no entry named.
"""

from __future__ import annotations

from typing import Final

STORE_EVENTS: Final = """
local window = tonumber(ARGV[1])
local maxlen0, max_age, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local group, batch = ARGV[5], cjson.decode(ARGV[6])
local entries, named, before_len = {}, {}, {}
for e = 1, #batch do
  local stream, seen, answer, fields = batch[e][1], batch[e][2], batch[e][3], batch[e][4]
  named[stream] = true
  local prior = false
  if seen > 0 then prior = redis.call('GET', KEYS[seen]) end
  if prior then
    redis.call('PEXPIRE', KEYS[seen], window)
    entries[#entries + 1] = 0
    entries[#entries + 1] = prior
  else
    local old_length = before_len[stream] or redis.pcall('XLEN', KEYS[stream])
    local added = redis.pcall('XADD', KEYS[stream], '*', unpack(fields))
    if type(added) == 'table' and added.err then
      entries[#entries + 1] = -1
      entries[#entries + 1] = added.err
    else
      if seen > 0 then redis.call('SET', KEYS[seen], answer, 'PX', window) end
      before_len[stream] = old_length
      entries[#entries + 1] = 1
      entries[#entries + 1] = false
    end
  end
end

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function before(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end

local function trim(key, old_length)
  local maxlen = maxlen0
  local min_id = ''
  if max_age > 0 then
    local now = redis.call('TIME')
    local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    min_id = string.format('%.0f', now_ms - max_age) .. '-0'
  end
  local length = redis.call('XLEN', key)
  if max_bytes > 0 and length > 1 and math.floor(length / 64) > math.floor(old_length / 64) then
    local used = redis.call('MEMORY', 'USAGE', key) or 0
    if used > max_bytes then
      maxlen = math.min(maxlen, math.max(1, math.floor(length * max_bytes / used)))
    end
  end
  local bound = min_id
  if length > maxlen and group == '' then
    -- Nothing to count apart: trim by length, then by age, without reading any entry.
    local removed = redis.call('XTRIM', key, 'MAXLEN', '=', maxlen)
    if min_id ~= '' then removed = removed + redis.call('XTRIM', key, 'MINID', '=', min_id) end
    return {removed, 0, length - removed}
  end
  if length > maxlen then
    local oldest = redis.call('XRANGE', key, '-', '+', 'COUNT', length - maxlen + 1)
    local kept = oldest[#oldest][1]
    if bound == '' or before(bound, kept) then bound = kept end
  end
  if bound == '' then return {0, 0, length} end
  local unread = 0
  if group ~= '' then
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
      local info = {}
      for k = 1, #g, 2 do info[g[k]] = g[k + 1] end
      if info['name'] == group and before(info['last-delivered-id'], bound) then
        unread = #redis.call('XRANGE', key, '(' .. info['last-delivered-id'], '(' .. bound)
      end
    end
  end
  local removed = redis.call('XTRIM', key, 'MINID', '=', bound)
  return {removed, unread, length - removed}
end

local streams = {}
for s = 1, 2 do
  local stats = {0, 0, -1}
  if before_len[s] ~= nil then
    stats = trim(KEYS[s], before_len[s])
  elseif named[s] then
    local length = redis.pcall('XLEN', KEYS[s])
    if type(length) == 'number' then stats = {0, 0, length} end
  end
  for _, v in ipairs(stats) do streams[#streams + 1] = v end
end
return {entries, streams}
"""
