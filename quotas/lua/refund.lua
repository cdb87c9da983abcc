--[[
refund.lua: give back quota units reserved at a time, in the windows they
were reserved in and the counters they were reserved in, and note it for the
ledger.

KEYS[1] the account's hash ("tg:{a42}")  KEYS[2] its usage ("tg:{a42}:u")
ARGV[1] units to give back  [2] when they were reserved (ms)
    [3] that day (days since the epoch)  [4] hash TTL (ms)
then pairs: field, window id   (e.g. "qd" "20261126" "qm" "202611")

Example: EVALSHA <sha> 2 tg:{a42} tg:{a42}:u 5000 1795694400000 20783 5529600000
         qd 20261126 qm 202611  ->  {2, "1795600000000"}

Reply: {fields changed, the hash's creation time "c" or ""}; {-1, c} when
the hash is missing or was created after the reservation (Redis lost the
counters since and they were restored from the ledger, or are not yet): the
counters then hold units used since, which a refund must never take, so
nothing is changed (quotas.redis_backend decides what the ledger gets).
Otherwise the units leave each window that is still the current one for its
field, and the usage hash notes them on the reservation's day for key 0
(":d" minus the units, ":f" plus them).
]]
if #KEYS ~= 2 or #ARGV < 6 or #ARGV % 2 ~= 0 then
  return redis.error_reply("refund.lua: expected 2 keys, 4 arguments and field/window pairs")
end
local units, at, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local created = redis.call("HGET", KEYS[1], "c")
if redis.call("EXISTS", KEYS[1]) == 0 or (created and tonumber(created) > at) then
  return {-1, created or ""}
end
local changed = 0
for i = 5, #ARGV, 2 do
  local stored = redis.call("HGET", KEYS[1], ARGV[i])
  if stored then
    local window, used = string.match(stored, "^(%d+):(%d+)$")
    if window == ARGV[i + 1] then
      local left = tonumber(used) - units
      if left < 0 then left = 0 end
      redis.call("HSET", KEYS[1], ARGV[i], window .. ":" .. left)
      changed = changed + 1
    end
  end
end
local prefix = "0:" .. ARGV[3]
redis.call("HINCRBY", KEYS[2], prefix .. ":d", -units)
redis.call("HINCRBY", KEYS[2], prefix .. ":f", units)
redis.call("PEXPIRE", KEYS[2], ttl)
return {changed, created or ""}
