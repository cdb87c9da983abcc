--[[
restore.lua: create a missing account hash with its counters as the ledger
has them, and a generation; or, if another process created it meanwhile,
answer its generation.

KEYS[1] the account's hash ("tg:{a42}")
KEYS[2] its usage not yet in the ledger ("tg:{a42}:u"), KEYS[3] a batch of it
        handed to a flusher and maybe not applied yet ("tg:{a42}:b")
ARGV[1] a fresh random generation  [2] now (ms)  [3] hash TTL (ms)
    [4] today (days since the epoch)  [5] the first day of this month, likewise
    [6] day window id  [7] the ledger's units today
    [8] month window id  [9] the ledger's units this month
    then pairs: rate-limit field, GCRA state ("<ms>:<frac>")

Example: EVALSHA <sha> 3 tg:{a42} tg:{a42}:u tg:{a42}:b 9b2e41d0 1795694400000
         5529600000 20783 20758 20261126 150 202611 150 r17:100/3600000 1795698000000:0
         ->  {"9b2e41d0", 1}

Reply: {generation, 1 if the hash was created here, else 0}. Units still in
KEYS[2] and KEYS[3] (an account evicted alone, its usage hashes kept) are
added to the ledger's: a batch already applied but not yet acknowledged is
then counted twice, which refuses more, never admits more.
]]
if #KEYS ~= 3 or #ARGV < 9 or #ARGV % 2 ~= 1 then
  return redis.error_reply("restore.lua: expected 3 keys, 9 arguments and field/state pairs")
end
local current = redis.call("HGET", KEYS[1], "g")
if current then
  return {current, 0}
end
if redis.call("EXISTS", KEYS[1]) == 1 then
  redis.call("HSET", KEYS[1], "g", ARGV[1])
  return {ARGV[1], 0}
end
local now, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local today, first = tonumber(ARGV[4]), tonumber(ARGV[5])
local day_units, month_units = tonumber(ARGV[7]), tonumber(ARGV[9])
for k = 2, 3 do
  local flat = redis.call("HGETALL", KEYS[k])
  for i = 1, #flat, 2 do
    local day, kind = string.match(flat[i], "^%d+:(%d+):(%a)$")
    if kind == "r" or kind == "d" then  -- units are requests plus the difference
      day = tonumber(day)
      if day == today then day_units = day_units + tonumber(flat[i + 1]) end
      if day >= first and day <= today then month_units = month_units + tonumber(flat[i + 1]) end
    end
  end
end
local fields = {"g", ARGV[1], "x", now + ttl, "c", now}
if day_units > 0 then
  fields[#fields + 1], fields[#fields + 2] = "qd", ARGV[6] .. ":" .. day_units
end
if month_units > 0 then
  fields[#fields + 1], fields[#fields + 2] = "qm", ARGV[8] .. ":" .. month_units
end
for i = 10, #ARGV, 2 do
  fields[#fields + 1], fields[#fields + 2] = ARGV[i], ARGV[i + 1]
end
redis.call("HSET", KEYS[1], unpack(fields))
redis.call("PEXPIRE", KEYS[1], ttl)
return {ARGV[1], 1}
