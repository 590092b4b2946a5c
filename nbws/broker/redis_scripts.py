"""The Lua scripts of the Redis broker: every change to a stream is one script, so it is
atomic across all server processes sharing the Redis.

Keys of one stream (``P`` is the prefix, ``{name}`` a hash tag keeping them together):

- ``P:{name}:meta``: hash with ``epoch``, ``base``, ``next``, ``first``, ``total``
  (payload bytes appended this epoch), ``cfirst``/``tfirst`` (the ``c``/``t`` of the
  oldest entry, or of an older one: a cheap lower bound that tells when a trim scan is
  needed), ``created`` and the limits ``mm``/``mb``/``ma``.
- ``P:{name}:log``: the Redis stream. The entry of offset ``o`` has the id
  ``<base + o + 1>-0``, so offsets and ids map exactly both ways and a read ``since`` is
  one ``XRANGE``. Fields, always in this order (Redis stores the names once per node):
  ``o`` offset, ``e`` epoch, ``t`` time (µs, Redis clock), ``c`` payload bytes appended
  before this entry in the epoch, ``f`` flags (1 binary, 2 producer/seq, 4 key,
  8 content type), ``p`` payload, ``r`` producer, ``s`` seq, ``k`` key, ``y`` content type.
  The key outlives a delete (emptied, with its last id), so a re-created stream's ids
  continue above every id a reader may hold: ``base`` is that last id.
- ``P:{name}:seen:<producer>``: sorted set, member ``seq``, score its offset (lookup is
  ``ZSCORE``; eviction is ``ZPOPMIN``, the oldest appended first, like the memory
  broker's window); ``P:{name}:forgotten``: hash producer → highest seq evicted;
  ``P:{name}:newest``: hash producer → highest seq appended (a batch above it and above
  the evicted ones is new as a whole: no lookup per message);
  ``P:{name}:producers``: set of producers with a window (for delete).
- ``P:streams``: set of stream names.

History bounds are exact: the script computes the first offset to keep (messages: from
``next``; bytes: the first entry whose ``total - c`` fits; age: the first entry whose
``t`` is recent enough) and cuts with ``XTRIM MINID`` at that entry's id.
"""

from __future__ import annotations

__all__ = ["APPEND", "APPEND_BATCH", "CREATE", "DELETE", "INFO", "READ", "STATE"]

_PRELUDE = r"""
local function fmt(n) return string.format('%.0f', n) end
local function entry_id(base, offset) return fmt(base + offset + 1) .. '-0' end
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- The highest seq ``producer`` appended: ``newest``, or (a window kept from before that
-- hash existed) the highest member of its window, once.
local function newest_seq(newest_key, seen_key, producer)
  local v = redis.call('HGET', newest_key, producer)
  if v then return tonumber(v) end
  local hi = -1
  for _, member in ipairs(redis.call('ZRANGE', seen_key, 0, -1)) do
    local n = tonumber(member)
    if n > hi then hi = n end
  end
  return hi
end

local FIELDS = {'epoch', 'base', 'next', 'first', 'total', 'cfirst', 'tfirst', 'created',
                'mm', 'mb', 'ma'}

local function load_meta(key)
  local v = redis.call('HMGET', key, unpack(FIELDS))
  if not v[1] then return nil end
  return {epoch = v[1], base = tonumber(v[2]), next = tonumber(v[3]), first = tonumber(v[4]),
          total = tonumber(v[5]), cfirst = tonumber(v[6]), tfirst = tonumber(v[7]),
          created = v[8], mm = tonumber(v[9]), mb = tonumber(v[10]), ma = tonumber(v[11])}
end

local function create_meta(meta_key, log_key, registry, name, epoch, mm, mb, ma, now)
  local base = 0
  if redis.call('EXISTS', log_key) == 1 then
    local info = redis.call('XINFO', 'STREAM', log_key)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then
        base = tonumber(string.match(info[i + 1], '^(%d+)'))
      end
    end
    redis.call('XTRIM', log_key, 'MAXLEN', 0)
  end
  local created = string.format('%.6f', now / 1000000)
  redis.call('HSET', meta_key, 'epoch', epoch, 'base', fmt(base), 'next', 0, 'first', 0,
             'total', 0, 'cfirst', 0, 'tfirst', 0, 'created', created,
             'mm', mm, 'mb', mb, 'ma', ma)
  redis.call('SADD', registry, name)
  return {epoch = epoch, base = base, next = 0, first = 0, total = 0, cfirst = 0, tfirst = 0,
          created = created, mm = tonumber(mm), mb = tonumber(mb), ma = tonumber(ma)}
end

-- Drop what the limits no longer allow; one XTRIM MINID at the first entry kept.
local function trim(meta_key, log_key, m, now)
  local first, nxt = m.first, m.next
  local newfirst = first
  if nxt - m.mm > newfirst then newfirst = nxt - m.mm end
  local cf, tf = m.cfirst, m.tfirst
  local cutoff = nil
  if m.ma > 0 then cutoff = now - m.ma * 1000000 end
  if newfirst < nxt and ((m.mb > 0 and m.total - cf > m.mb) or (cutoff and tf < cutoff)) then
    local found = false
    while not found and newfirst < nxt do
      local entries = redis.call('XRANGE', log_key, entry_id(m.base, newfirst), '+', 'COUNT', 8)
      if #entries == 0 then
        newfirst = nxt
        break
      end
      for _, e in ipairs(entries) do
        local f = e[2]
        local o, t, c = tonumber(f[2]), tonumber(f[6]), tonumber(f[8])
        if (m.mb > 0 and m.total - c > m.mb) or (cutoff and t < cutoff) then
          newfirst = o + 1
        else
          newfirst, cf, tf, found = o, c, t, true
          break
        end
      end
    end
  end
  if newfirst >= nxt then
    newfirst, cf, tf = nxt, m.total, now
  end
  if newfirst ~= first or cf ~= m.cfirst or tf ~= m.tfirst then
    if newfirst > first then
      redis.call('XTRIM', log_key, 'MINID', entry_id(m.base, newfirst))
    end
    redis.call('HSET', meta_key, 'first', newfirst, 'cfirst', fmt(cf), 'tfirst', fmt(tf))
    m.first, m.cfirst, m.tfirst = newfirst, cf, tf
  end
end

-- {'ok', epoch, first, next, bytes, created, mm, mb, ma, base}
local function describe(log_key, m)
  local bytes = 0
  if m.first < m.next then
    local head = redis.call('XRANGE', log_key, entry_id(m.base, m.first), '+', 'COUNT', 1)
    if #head > 0 then bytes = m.total - tonumber(head[1][2][8]) end
  end
  return {'ok', m.epoch, m.first, m.next, fmt(bytes), m.created, fmt(m.mm), fmt(m.mb),
          tostring(m.ma), fmt(m.base)}
end
"""

APPEND = (
    _PRELUDE
    + r"""
-- KEYS: meta, log, registry, producers, forgotten, seen, newest
-- ARGV: name, payload, flags, producer, seq, key, content_type, create, epoch, mm, mb, ma, window
local m = load_meta(KEYS[1])
local now = now_us()
if not m then
  if ARGV[8] ~= '1' then return {'unknown'} end
  m = create_meta(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[9], ARGV[10], ARGV[11], ARGV[12], now)
end
local size = string.len(ARGV[2])
if m.mb > 0 and size > m.mb then return {'oversize', fmt(m.mb)} end
local producer, seq = ARGV[4], ARGV[5]
local acked = seq ~= ''
if acked then
  local seen = redis.call('ZSCORE', KEYS[6], seq)
  if seen then return {'duplicate', m.epoch, seen} end
  local lo = redis.call('HGET', KEYS[5], producer)
  if lo and tonumber(seq) <= tonumber(lo) then return {'duplicate', m.epoch, false} end
  local oldest = redis.call('ZRANGE', KEYS[6], 0, 0)[1]
  if oldest and tonumber(seq) < tonumber(oldest) then return {'duplicate', m.epoch, false} end
end
local offset, c = m.next, m.total
m.next, m.total = offset + 1, c + size
redis.call('XADD', KEYS[2], entry_id(m.base, offset), 'o', fmt(offset), 'e', m.epoch,
           't', fmt(now), 'c', fmt(c), 'f', ARGV[3], 'p', ARGV[2], 'r', producer, 's', seq,
           'k', ARGV[6], 'y', ARGV[7])
if m.first == offset then
  m.cfirst, m.tfirst = c, now
  redis.call('HSET', KEYS[1], 'next', fmt(m.next), 'total', fmt(m.total),
             'cfirst', fmt(c), 'tfirst', fmt(now))
else
  redis.call('HSET', KEYS[1], 'next', fmt(m.next), 'total', fmt(m.total))
end
trim(KEYS[1], KEYS[2], m, now)
if acked then
  redis.call('ZADD', KEYS[6], offset, seq)
  if tonumber(seq) > newest_seq(KEYS[7], KEYS[6], producer) then
    redis.call('HSET', KEYS[7], producer, seq)
  end
  redis.call('SADD', KEYS[4], producer)
  local extra = redis.call('ZCARD', KEYS[6]) - tonumber(ARGV[13])
  if extra > 0 then
    local popped = redis.call('ZPOPMIN', KEYS[6], extra)
    local lo = tonumber(redis.call('HGET', KEYS[5], producer) or '-1')
    for i = 1, #popped, 2 do
      local s = tonumber(popped[i])
      if s > lo then lo = s end
    end
    redis.call('HSET', KEYS[5], producer, fmt(lo))
  end
end
return {'ok', m.epoch, fmt(offset), fmt(now), fmt(m.base)}
"""
)

APPEND_BATCH = (
    _PRELUDE
    + r"""
-- One producer's messages with seqs seq0, seq0 + 1, ...: APPEND for each, in one script
-- (consecutive offsets, no other append in between), with the dedupe window's lookups,
-- the meta update, the trim and the window's eviction done once.
-- KEYS: meta, log, registry, producers, forgotten, seen, newest
-- ARGV: name, flags, producer, seq0, content_type, create, epoch, mm, mb, ma, window, n,
--       payload sizes (',' separated), the payloads concatenated,
--       key sizes (',' separated, -1 for none; '' when no message has a key), the keys
--       concatenated (flag 4 is added for messages with a key)
-- {'ok', epoch, first offset appended, now, base, codes, duplicate offsets, mb}: codes has
-- one character per message, 'a' (appended: the k-th 'a' got offset first + k), 'd'
-- (a duplicate: its offset is the next of duplicate offsets, '' if forgotten) or 'x'
-- (over the byte bound mb)
local m = load_meta(KEYS[1])
local now = now_us()
if not m then
  if ARGV[6] ~= '1' then return {'unknown'} end
  m = create_meta(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[7], ARGV[8], ARGV[9], ARGV[10], now)
end
local flags, producer, seq0 = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local n = tonumber(ARGV[12])
local sizes = {}
for size in string.gmatch(ARGV[13], '%d+') do sizes[#sizes + 1] = tonumber(size) end
local blob = ARGV[14]
local ksizes = nil
if ARGV[15] ~= '' then
  ksizes = {}
  for size in string.gmatch(ARGV[15], '-?%d+') do ksizes[#ksizes + 1] = tonumber(size) end
end
local kblob = ARGV[16]
local lo = tonumber(redis.call('HGET', KEYS[5], producer) or '-1')
local oldest = redis.call('ZRANGE', KEYS[6], 0, 0)[1]
oldest = oldest and tonumber(oldest) or nil
-- New as a whole (the usual batch): above every seq appended and evicted, so no lookup
-- per message.
local highest = newest_seq(KEYS[7], KEYS[6], producer)
local fresh = seq0 > lo and seq0 > highest
local codes, dups, added = {}, {}, {}
local start = m.next
local pos, kpos = 1, 1
local log_key, seen_key, epoch, now_s, ctype = KEYS[2], KEYS[6], m.epoch, fmt(now), ARGV[5]
local base1 = m.base + 1  -- entry id of offset o: base1 + o
for i = 1, n do
  local size = sizes[i]
  local payload = string.sub(blob, pos, pos + size - 1)
  pos = pos + size
  local key, f = '', flags
  if ksizes and ksizes[i] >= 0 then
    key = string.sub(kblob, kpos, kpos + ksizes[i] - 1)
    kpos = kpos + ksizes[i]
    f = f + 4
  end
  local s = seq0 + i - 1
  local seq = fmt(s)
  if m.mb > 0 and size > m.mb then
    codes[i] = 'x'
  else
    local seen = (not fresh) and redis.call('ZSCORE', seen_key, seq)
    if seen then
      codes[i] = 'd'
      dups[#dups + 1] = seen
    elseif (not fresh) and (s <= lo or (oldest and s < oldest)) then
      codes[i] = 'd'
      dups[#dups + 1] = ''
    else
      if s > highest then highest = s end
      local offset, c = m.next, m.total
      m.next, m.total = offset + 1, c + size
      local o = fmt(offset)
      redis.call('XADD', log_key, fmt(base1 + offset) .. '-0', 'o', o, 'e', epoch,
                 't', now_s, 'c', fmt(c), 'f', f, 'p', payload, 'r', producer, 's', seq,
                 'k', key, 'y', ctype)
      if m.first == offset then
        m.cfirst, m.tfirst = c, now
        redis.call('HSET', KEYS[1], 'cfirst', fmt(c), 'tfirst', fmt(now))
      end
      added[#added + 1] = offset
      added[#added + 1] = seq
      codes[i] = 'a'
    end
  end
end
if #added > 0 then
  redis.call('HSET', KEYS[1], 'next', fmt(m.next), 'total', fmt(m.total))
  trim(KEYS[1], KEYS[2], m, now)
  for j = 1, #added, 1000 do  -- (unpack has a stack limit)
    redis.call('ZADD', KEYS[6], unpack(added, j, math.min(j + 999, #added)))
  end
  redis.call('HSET', KEYS[7], producer, fmt(highest))
  redis.call('SADD', KEYS[4], producer)
  local extra = redis.call('ZCARD', KEYS[6]) - tonumber(ARGV[11])
  if extra > 0 then
    local popped = redis.call('ZPOPMIN', KEYS[6], extra)
    for i = 1, #popped, 2 do
      local s = tonumber(popped[i])
      if s > lo then lo = s end
    end
    redis.call('HSET', KEYS[5], producer, fmt(lo))
  end
end
return {'ok', m.epoch, fmt(start), fmt(now), fmt(m.base), table.concat(codes), dups, fmt(m.mb)}
"""
)

READ = (
    _PRELUDE
    + r"""
-- KEYS: meta, log; ARGV: since, limit
-- {'ok', epoch, first, next, base, entries}
local m = load_meta(KEYS[1])
if not m then return {'unknown'} end
if m.ma > 0 then trim(KEYS[1], KEYS[2], m, now_us()) end
local since, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
if since < m.first then since = m.first end
local entries = {}
if since < m.next and limit > 0 then
  entries = redis.call('XRANGE', KEYS[2], entry_id(m.base, since), '+', 'COUNT', limit)
end
return {'ok', m.epoch, fmt(m.first), fmt(m.next), fmt(m.base), entries}
"""
)

INFO = (
    _PRELUDE
    + r"""
-- KEYS: meta, log
local m = load_meta(KEYS[1])
if not m then return {'unknown'} end
if m.ma > 0 then trim(KEYS[1], KEYS[2], m, now_us()) end
return describe(KEYS[2], m)
"""
)

CREATE = (
    _PRELUDE
    + r"""
-- KEYS: meta, log, registry; ARGV: name, epoch, mm, mb, ma, set_limits
local now = now_us()
local m = load_meta(KEYS[1])
if not m then
  m = create_meta(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], now)
elseif ARGV[6] == '1' then
  redis.call('HSET', KEYS[1], 'mm', ARGV[3], 'mb', ARGV[4], 'ma', ARGV[5])
  m.mm, m.mb, m.ma = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  trim(KEYS[1], KEYS[2], m, now)
end
return describe(KEYS[2], m)
"""
)

DELETE = r"""
-- KEYS: meta, log, registry, producers, forgotten, newest; ARGV: name, seen-key prefix
local existed = redis.call('EXISTS', KEYS[1])
for _, producer in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  redis.call('DEL', ARGV[2] .. producer)
end
redis.call('DEL', KEYS[1], KEYS[4], KEYS[5], KEYS[6])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('XTRIM', KEYS[2], 'MAXLEN', 0) end
redis.call('SREM', KEYS[3], ARGV[1])
return existed
"""

STATE = r"""
-- KEYS: meta of each stream; {epoch or false, base, first} per key
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'epoch', 'base', 'first')
  out[i] = {v[1], v[2] or '0', v[3] or '0'}
end
return out
"""
