--[[
charge.lua: check every rate limit and quota of one request and commit all of
them or none; optionally lease more of them to the calling process, and take
back what an earlier lease did not use. One EVALSHA per request; inside, one
HMGET and, when something changes, one HSET (plus a PEXPIRE about once a month),
and for the usage ledger one HINCRBY (two when a call's units are not its
requests).

This header is the layout's only description. quotas/codec.py encodes these
arguments and decodes the reply; quotas/evaluation.py is the same logic in
Python for the in-memory backend (tests hold the two to identical answers);
quotas/leases.py explains why leasing and giving back never over-admit.

All state of an account lives in one hash, KEYS[1] = "tg:{a42}" (the braces
are a Redis Cluster hash tag: one account, one slot), and what it used since
the ledger's last flush in another, KEYS[2] = "tg:{a42}:u" (same slot). The
first one's fields:
  g                 generation; the caller's copy of the account must match
  x                 when the hash expires (ms), to refresh the TTL rarely
  r<key>:<n>/<p>    GCRA theoretical arrival time (TAT) of a key's rate limit,
                    "<ms>:<frac>" meaning ms + frac/n (exact integer arithmetic)
  l<key>:<n>/<p>    lease bookkeeping of that rate limit, once a lease was granted
                    on it: "<run>:<budget>:<ms>:<frac>" (see below)
  qd / qm           a quota window "<window id>:<units used>", e.g. "20261126:42"
  m<0-59>           requests admitted in a minute, "<minute id>:<count>" (a ring
                    of the last hour, for the operations page)
  k<key>:<0-6>      requests admitted by a key in a 10-minute bucket, likewise
  c                 when this hash was created (ms): refunds of units reserved
                    before it are fenced (refund.lua)
KEYS[2] (usage not yet in the ledger, drained by quotas.ledger):
  <key>:<day>:r     requests admitted on a UTC day (days since the epoch)
  <key>:<day>:d     units consumed that day minus those requests (leased ones
                    count until given back); absent while they are equal, so
                    a plain request costs one HINCRBY

ARGV, the part fixed for a key record and its quota windows first:
  [1] generation  [2] R (rate limits)  [3] Q (quotas)  [4] key id
  [5] hash TTL (ms)  [6] lease margin M
  then R times: field, count, period (ms), its bookkeeping field
  then Q times: field, limit, window id, window end (ms)
then the part of this call (D = 7 + 4R + 4Q):
  [D] now (ms)  [D+1] rate cost  [D+2] quota cost
  [D+3] lease requests  [D+4] lease units  [D+5] lease expiry (ms)
  [D+6] give-back requests  [D+7] give-back units
  [D+8] minute id  [D+9] its ring field  [D+10] 10-minute bucket id  [D+11] its field
  and when either give-back count is not 0, the lease's own minute and bucket
  ([D+12] to [D+15], likewise), then R run ids, then Q window ids

Example (100/m for key 17, 10000/day for account 42, at 2026-11-26T12:00Z,
one request, no lease, nothing to give back):
  EVALSHA <sha> 2 tg:{a42} tg:{a42}:u 5f1c 1 1 17 5529600000 64
          r17:100/60000 100 60000 l17:100/60000  qd 10000 20261126 1795737600000
          1795694400000 1 1 0 0 0 0 0  29928240 m0 2992824 k17:0

Reply: {status, violated, retry (ms), leased, tightest, then per limit (rate
limits, then quotas) what is left and the seconds until it is whole again
(rounded up), then per limit those ms, then per rate limit its run id, then
per quota the units used}: the state after the decision, as the headers show
it. status 1 = admitted and committed, 0 = rejected (nothing charged;
violated = 1-based index of the limit that waits longest), -1 = stale
generation ({-1, current generation}): reload the account, retry. leased 1 =
the lease was granted too. tightest = the violated limit, else the one with
the fewest left (of those, the one that resets last); 0 without limits. A
cost of 0 never rejects and charges nothing (a peek). run id 0: no lease
bookkeeping on that limit.

Leases. A lease of k requests (and u units) expiring at e is charged as if its
requests arrived at e: TAT := max(TAT, e) + (cost + k) x period/count, checked
against now like any charge, so every slot it holds lies after e, and it is
granted only if afterwards every rate limit has at least M x (cost + k)
requests left and every quota M x (cost + u) units (M times all the call
reserves), and e is within every quota window.
Otherwise the call is charged without a lease. A give-back subtracts unused
requests from the TAT only while the limit's run id is the lease's (no clamp
of the TAT since) and its budget (the least slack of any charge since the run
began, minus what was given back since) covers them; unused units go back to a
quota window only while it is the lease's window. The generation check covers
both: a hash lost and recreated never takes a give-back.
]]
if #KEYS ~= 2 then
  return redis.error_reply("charge.lua: expected 2 keys, got " .. #KEYS)
end
local nr, nq = tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl, margin = tonumber(ARGV[5]), tonumber(ARGV[6])
if not (nr and nq and ttl and margin) then
  return redis.error_reply("charge.lua: malformed arguments")
end
local d = 7 + 4 * nr + 4 * nq
local now = tonumber(ARGV[d])
local rc, qc = tonumber(ARGV[d + 1]), tonumber(ARGV[d + 2])
local lk, lu, le = tonumber(ARGV[d + 3]), tonumber(ARGV[d + 4]), tonumber(ARGV[d + 5])
local gr, gu = tonumber(ARGV[d + 6]), tonumber(ARGV[d + 7])
if not (now and rc and qc and lk and lu and le and gr and gu) then
  return redis.error_reply("charge.lua: malformed arguments")
end
local giving = gr > 0 or gu > 0
if #ARGV ~= d + 11 + (giving and (4 + nr + nq) or 0) then
  return redis.error_reply("charge.lua: malformed arguments")
end

-- fields: generation, expiry, this minute, this key's bucket, R TATs, R lease
-- bookkeepings, Q quotas, and for a give-back the lease's minute and bucket
local m_id, m_field, b_id, b_field = ARGV[d + 8], ARGV[d + 9], ARGV[d + 10], ARGV[d + 11]
local fields = {"g", "x", m_field, b_field}
for i = 1, nr do
  fields[4 + i] = ARGV[3 + 4 * i]
  fields[4 + nr + i] = ARGV[6 + 4 * i]
end
for j = 1, nq do fields[4 + 2 * nr + j] = ARGV[3 + 4 * nr + 4 * j] end
local given = d + 15  -- the give-back's run ids follow
if giving then
  fields[#fields + 1] = ARGV[d + 13]
  fields[#fields + 1] = ARGV[d + 15]
end
local values = redis.call("HMGET", KEYS[1], unpack(fields))
if values[1] ~= ARGV[1] then
  return {-1, values[1] or ""}
end

local function pair(stored)
  if not stored then return nil, nil end
  return string.match(stored, "^(%d+):(%d+)$")
end
local writes = {}
local function write(field, value)
  writes[#writes + 1] = field
  writes[#writes + 1] = value
end

-- Rate limits: the TAT (a + b/count ms; nil: none stored) and the lease
-- bookkeeping (run id; budget in ms, -1 = unbounded), which is valid
-- ("booked") only if it was written with the current TAT: a write by
-- anything else voids it, and its run id then can never match again.
local count, period, ta, tb, run, budget, booked = {}, {}, {}, {}, {}, {}, {}
for i = 1, nr do
  count[i], period[i] = tonumber(ARGV[4 + 4 * i]), tonumber(ARGV[5 + 4 * i])
  local sa, sb = pair(values[4 + i])
  ta[i], tb[i] = tonumber(sa), tonumber(sb)
  run[i], budget[i], booked[i] = 0, -1, false
  local book = values[4 + nr + i]
  if book then
    local br, bg, ba, bb = string.match(book, "^(%d+):(%-?%d+):(%d+):(%d+)$")
    run[i] = tonumber(br) or 0
    if br and ta[i] and tonumber(ba) == ta[i] and tonumber(bb) == tb[i] then
      budget[i], booked[i] = tonumber(bg), true
    end
  end
end
-- Quotas: units used in the current window. A call whose window is older
-- than the stored one ("late": its process's clock is behind another's at a
-- window's end) cannot be counted in its window any more, whose count is
-- gone: it may not consume units (it is refused, retry in 1 ms).
local used, window, window_end, limit, late = {}, {}, {}, {}, {}
for j = 1, nq do
  local base = 3 + 4 * nr + 4 * j  -- its field
  limit[j], window[j], window_end[j] = tonumber(ARGV[base + 1]), ARGV[base + 2], tonumber(ARGV[base + 3])
  local sw, su = pair(values[4 + 2 * nr + j])
  used[j] = (sw == window[j]) and tonumber(su) or 0
  late[j] = sw ~= nil and tonumber(sw) > tonumber(window[j])
end
-- Traffic rings of this minute and bucket: the stored period id and count.
local m_sid, m_n = pair(values[3])
local b_sid, b_n = pair(values[4])
m_n, b_n = tonumber(m_n) or 0, tonumber(b_n) or 0
local m_touched, b_touched = false, false

-- Give back first, whatever becomes of the charge.
local rate_changed = {}
if giving then
  for i = 1, nr do
    if gr > 0 and booked[i] and run[i] == tonumber(ARGV[given + i]) then
      local back = gr * period[i]
      local da, db = math.floor(back / count[i]), back % count[i]
      local need = da + (db > 0 and 1 or 0)
      if budget[i] < 0 or need <= budget[i] then
        local a, b = ta[i] - da, tb[i] - db
        if b < 0 then a, b = a - 1, b + count[i] end
        ta[i], tb[i] = a, b
        if budget[i] >= 0 then budget[i] = budget[i] - need end
        rate_changed[i] = true
      end
    end
  end
  for j = 1, nq do
    local sw, su = pair(values[4 + 2 * nr + j])
    if gu > 0 and sw and sw == ARGV[given + nr + j] then
      -- Only into the lease's own window, if it is still the stored one.
      local left = math.max(tonumber(su) - gu, 0)
      if sw == window[j] then used[j] = left end
      write(fields[4 + 2 * nr + j], sw .. ":" .. left)
    end
  end
  if gr > 0 then
    -- The lease's requests leave the ring slots they were counted in, if
    -- those still hold the lease's minute and bucket.
    local lm_id, lm_field, lb_id, lb_field = ARGV[d + 12], ARGV[d + 13], ARGV[d + 14], ARGV[d + 15]
    if lm_field == m_field then
      if m_sid == lm_id then m_n, m_touched = math.max(m_n - gr, 0), true end
    else
      local sid, sc = pair(values[#fields - 1])
      if sid == lm_id then write(lm_field, sid .. ":" .. math.max(tonumber(sc) - gr, 0)) end
    end
    if lb_field == b_field then
      if b_sid == lb_id then b_n, b_touched = math.max(b_n - gr, 0), true end
    else
      local sid, sc = pair(values[#fields])
      if sid == lb_id then write(lb_field, sid .. ":" .. math.max(tonumber(sc) - gr, 0)) end
    end
  end
end

-- One attempt: the call's own cost plus `extra` leased requests (placed at
-- `at`, the lease's expiry) and `extra_units` leased units. Returns whether
-- it passes (with a lease: within the margins and the quota windows), the
-- limit that waits longest and how long, and per rate limit the new TAT.
local function attempt(extra, extra_units, at)
  local ok, violated, retry = true, 0, 0
  local na, nb = {}, {}
  local leasing = extra > 0 or extra_units > 0
  local from = extra > 0 and at or now
  for i = 1, nr do
    local a, b = from, 0
    if ta[i] and ta[i] + (tb[i] > 0 and 1 or 0) > from then a, b = ta[i], tb[i] end
    local sum = b + (rc + extra) * period[i]
    na[i], nb[i] = a + math.floor(sum / count[i]), sum % count[i]
    local over = na[i] + (nb[i] > 0 and 1 or 0) - period[i] - now
    if over > 0 then
      ok = false
      if over > retry then violated, retry = i, over end
    elseif extra > 0 and (now + period[i] - na[i]) * count[i] - nb[i] < margin * (rc + extra) * period[i] then
      ok = false
    end
  end
  for j = 1, nq do
    if qc > 0 and (late[j] or used[j] + qc > limit[j]) then
      ok = false
      local wait = late[j] and 1 or window_end[j] - now
      if wait > retry then violated, retry = nr + j, wait end
    elseif leasing then
      local total = used[j] + qc + extra_units
      if at > window_end[j] or late[j] or (extra_units > 0 and limit[j] - total < margin * (qc + extra_units)) then
        ok = false
      end
    end
  end
  return ok, violated, retry, na, nb
end

local leased = lk > 0 or lu > 0
local ok, violated, retry, na, nb = false, 0, 0, nil, nil
if leased then
  ok, violated, retry, na, nb = attempt(lk, lu, le)
end
if not ok then
  leased = false
  ok, violated, retry, na, nb = attempt(0, 0, now)
end
local admitted = violated == 0
local k, ku, at = 0, 0, now
if leased then
  k, ku = lk, lu
  if lk > 0 then at = le end
end

-- The state after the decision, per limit (rates, then quotas): what is left
-- and when it is whole again (ms), and which limit is the tightest.
local left, reset = {}, {}
for i = 1, nr do
  local a, b = ta[i], tb[i]
  if admitted and rc + k > 0 then
    -- A clamp (the TAT was not after `at`) starts a new run, which no
    -- earlier lease can give back to; any other charge lowers the budget
    -- to its slack. Bookkeeping starts with the first lease on the limit.
    if booked[i] or leased then
      if not booked[i] or not (a and a + (b > 0 and 1 or 0) > at) then
        run[i], budget[i] = run[i] + 1, -1
      elseif budget[i] < 0 or a - at < budget[i] then
        budget[i] = a - at
      end
      booked[i] = true
    end
    a, b = na[i], nb[i]
    rate_changed[i] = true
  end
  if rate_changed[i] then
    write(fields[4 + i], a .. ":" .. b)
    if booked[i] then write(fields[4 + nr + i], run[i] .. ":" .. budget[i] .. ":" .. a .. ":" .. b) end
  end
  left[i], reset[i] = count[i], 0
  if a and a + (b > 0 and 1 or 0) > now then
    left[i] = math.min(math.max(math.floor(((now + period[i] - a) * count[i] - b) / period[i]), 0), count[i])
    reset[i] = a + (b > 0 and 1 or 0) - now
  end
end
for j = 1, nq do
  if admitted and qc + ku > 0 then
    used[j] = used[j] + qc + ku
    write(fields[4 + 2 * nr + j], window[j] .. ":" .. used[j])
  end
  left[nr + j] = math.max(limit[j] - used[j], 0)
  reset[nr + j] = window_end[j] - now
end
-- The tightest: the violated one, else the fewest left (of those, the one
-- that resets last).
local tightest = violated
if tightest == 0 then
  for n = 1, nr + nq do
    if tightest == 0 or left[n] < left[tightest] or (left[n] == left[tightest] and reset[n] > reset[tightest]) then
      tightest = n
    end
  end
end
local out = {admitted and 1 or 0, violated, retry, leased and 1 or 0, tightest}
for n = 1, nr + nq do
  out[#out + 1] = left[n]
  out[#out + 1] = math.floor((reset[n] + 999) / 1000)
end
for n = 1, nr + nq do out[#out + 1] = reset[n] end
for i = 1, nr do out[#out + 1] = booked[i] and run[i] or 0 end
for j = 1, nq do out[#out + 1] = used[j] end

-- Traffic: a ring slot of another period id is from an older lap and starts
-- again at zero. Leased requests count from the moment they are leased.
if admitted and rc + k > 0 then
  if m_sid ~= m_id then m_sid, m_n = m_id, 0 end
  if b_sid ~= b_id then b_sid, b_n = b_id, 0 end
  m_n, b_n, m_touched, b_touched = m_n + rc + k, b_n + rc + k, true, true
end
if m_touched then write(m_field, m_sid .. ":" .. m_n) end
if b_touched then write(b_field, b_sid .. ":" .. b_n) end

-- Usage for the ledger: what was admitted, at this call's UTC day, and what
-- a lease gave back, at the lease's day. A field new in KEYS[2] (drained
-- since) gives it the hash's TTL.
local day = math.floor(tonumber(m_id) / 1440)
local function usage(at_day, requests, units)
  local prefix = ARGV[4] .. ":" .. at_day
  local new = false
  if requests ~= 0 then
    new = redis.call("HINCRBY", KEYS[2], prefix .. ":r", requests) == requests
  end
  if units ~= requests then
    new = redis.call("HINCRBY", KEYS[2], prefix .. ":d", units - requests) == units - requests or new
  end
  if new then
    redis.call("PEXPIRE", KEYS[2], ttl)
  end
end
if giving then
  usage(math.floor(tonumber(ARGV[d + 12]) / 1440), -gr, -gu)
end
if admitted and rc + k + qc + ku > 0 then
  usage(day, rc + k, qc + ku)
end

if #writes > 0 then
  local expires = tonumber(values[2])
  if not expires or expires - now < ttl / 2 then
    write("x", now + ttl)
    redis.call("HSET", KEYS[1], unpack(writes))
    redis.call("PEXPIRE", KEYS[1], ttl)
  else
    redis.call("HSET", KEYS[1], unpack(writes))
  end
end
return out
