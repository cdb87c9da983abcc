--[[
generation.lua: the account's generation, created if missing.

KEYS[1] the account's hash ("tg:{a42}")
ARGV[1] a fresh random generation, used only if the hash has none
ARGV[2] now (ms)   ARGV[3] hash TTL (ms)

Example: EVALSHA <sha> 1 tg:{a42} 9b2e41d0 1795694400000 5529600000  ->  "9b2e41d0"

A process reads the generation before it loads an account from the database
and passes it to charge.lua with every request; any change to the account
deletes the field (quotas.limiter.RedisBackend.invalidate), so a process
holding an older copy gets "stale" on its next request and reloads.
]]
if #KEYS ~= 1 or #ARGV ~= 3 then
  return redis.error_reply("generation.lua: expected 1 key and 3 arguments")
end
local current = redis.call("HGET", KEYS[1], "g")
if current then
  return current
end
local ttl = tonumber(ARGV[3])
redis.call("HSET", KEYS[1], "g", ARGV[1], "x", tonumber(ARGV[2]) + ttl)
redis.call("PEXPIRE", KEYS[1], ttl)
return ARGV[1]
