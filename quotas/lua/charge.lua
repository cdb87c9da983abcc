--[[
charge.lua: check every rate limit and quota of one request, and commit all of
them or none. One EVALSHA per request; the only commands run are one HMGET and,
when something is consumed, one HSET (plus a PEXPIRE about once a month).

All state of an account lives in one hash, KEYS[1] = "tg:{a42}" (the braces
are a Redis Cluster hash tag: one account, one slot). Its fields:
  g                  generation; the caller's copy of the account must match
  x                  when the hash expires (ms), to refresh the TTL rarely
  r<key>:<n>/<p>     GCRA theoretical arrival time of an API key's rate limit
                     "<ms>:<frac>", i.e. ms + frac/n (exact integer arithmetic)
  qd / qm            a quota window "<window id>:<units used>", e.g. "20261126:42"
  m<0-59>            requests admitted in a minute, "<minute id>:<count>" (a ring
                     of the last hour, for the operations page)
  k<key>:<0-6>       requests admitted by a key in a 10-minute bucket, likewise

ARGV[1] now (ms)          ARGV[2] generation      ARGV[3] rate cost
ARGV[4] quota cost        ARGV[5] R (rate limits) ARGV[6] Q (quotas)
ARGV[7] hash TTL (ms)
ARGV[8] minute id         ARGV[9] its ring field ("m<minute mod 60>")
ARGV[10] 10-minute bucket id   ARGV[11] its field ("k<key>:<bucket mod 7>")
then R times: field, count, period (ms)
then Q times: field, count, window id, window end (ms)

Example (100/m per key 17, 10000/day for account 42, at 2026-11-26T12:00Z):
  EVALSHA <sha> 1 tg:{a42} 1795694400000 5f1c 1 1 1 1 5529600000
          29928240 m0 2992824 k17:0
          r17:100/60000 100 60000  qd 10000 20261126 1795737600000

Returns {status, generation, violated, retry_ms, then the state after the
decision: per rate limit its TAT as two integers (ms, frac), per quota the
units used}. status 1 = admitted and committed, 0 = rejected (nothing
written; violated = 1-based index of the limit that waits longest), -1 =
stale generation ({-1, current generation}): reload the account, retry.
A cost of 0 never rejects and writes nothing, which makes a peek.
]]
if #KEYS ~= 1 then
  return redis.error_reply("charge.lua: expected 1 key, got " .. #KEYS)
end
local now = tonumber(ARGV[1])
local rate_cost = tonumber(ARGV[3])
local quota_cost = tonumber(ARGV[4])
local nr = tonumber(ARGV[5])
local nq = tonumber(ARGV[6])
local ttl = tonumber(ARGV[7])
if not (now and rate_cost and quota_cost and nr and nq and ttl) or #ARGV ~= 11 + 3 * nr + 4 * nq then
  return redis.error_reply("charge.lua: malformed arguments")
end

-- fields[1..4]: generation, expiry, this minute, this key's 10-minute bucket
local fields = {"g", "x", ARGV[9], ARGV[11]}
for i = 1, nr do fields[4 + i] = ARGV[9 + 3 * i] end
for j = 1, nq do fields[4 + nr + j] = ARGV[8 + 3 * nr + 4 * j] end
local values = redis.call("HMGET", KEYS[1], unpack(fields))
if values[1] ~= ARGV[2] then
  return {-1, values[1] or ""}
end

local pre, post, writes = {}, {}, {}
local violated, retry = 0, 0

for i = 1, nr do
  local base = 9 + 3 * i
  local count, period = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  -- TAT = a + b/count ms; a TAT in the past means a full bucket.
  local a, b = now, 0
  local stored = values[4 + i]
  if stored then
    local sa, sb = string.match(stored, "^(%d+):(%d+)$")
    sa, sb = tonumber(sa), tonumber(sb)
    if sa and sa + (sb > 0 and 1 or 0) > now then a, b = sa, sb end
  end
  local nb = b + rate_cost * period
  local na = a + math.floor(nb / count)
  nb = nb % count
  local over = na + (nb > 0 and 1 or 0) - period - now
  if over > 0 then
    if over > retry then violated, retry = i, over end
  elseif rate_cost > 0 then
    writes[#writes + 1] = fields[4 + i]
    writes[#writes + 1] = na .. ":" .. nb
  end
  pre[#pre + 1], pre[#pre + 2] = a, b
  post[#post + 1], post[#post + 2] = na, nb
end

for j = 1, nq do
  local base = 8 + 3 * nr + 4 * j
  local limit, window = tonumber(ARGV[base + 1]), ARGV[base + 2]
  local used = 0
  local stored = values[4 + nr + j]
  if stored then
    local sw, su = string.match(stored, "^(%d+):(%d+)$")
    if sw == window then used = tonumber(su) end
  end
  if quota_cost > 0 and used + quota_cost > limit then
    local wait = tonumber(ARGV[base + 3]) - now
    if wait > retry then violated, retry = nr + j, wait end
  elseif quota_cost > 0 then
    writes[#writes + 1] = fields[4 + nr + j]
    writes[#writes + 1] = window .. ":" .. (used + quota_cost)
  end
  pre[#pre + 1] = used
  post[#post + 1] = used + quota_cost
end

-- The state after the decision; remaining and reset are derived from it by
-- the caller (quotas.limiter.build_decision), off this single-threaded server.
local admitted = violated == 0
local out = {admitted and 1 or 0, ARGV[2], violated, retry}
local after = admitted and post or pre
for k = 1, #after do out[4 + k] = after[k] end

-- Traffic counters: a ring field holds "<period id>:<count>"; another id
-- means the slot is from an older lap and starts again at zero.
local function bump(index, id)
  local count = 0
  local stored = values[index]
  if stored then
    local sid, sc = string.match(stored, "^(%d+):(%d+)$")
    if sid == id then count = tonumber(sc) end
  end
  writes[#writes + 1] = fields[index]
  writes[#writes + 1] = id .. ":" .. (count + rate_cost)
end
if admitted and rate_cost > 0 then
  bump(3, ARGV[8])
  bump(4, ARGV[10])
end

if admitted and #writes > 0 then
  local expires = tonumber(values[2])
  if not expires or expires - now < ttl / 2 then
    writes[#writes + 1] = "x"
    writes[#writes + 1] = now + ttl
    redis.call("HSET", KEYS[1], unpack(writes))
    redis.call("PEXPIRE", KEYS[1], ttl)
  else
    redis.call("HSET", KEYS[1], unpack(writes))
  end
end
return out
