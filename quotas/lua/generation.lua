--[[
generation.lua: the account's generation; created if the hash has none, or
nothing when the hash is missing altogether (its counters must be restored
from the ledger first: restore.lua).

KEYS[1] the account's hash ("tg:{a42}")
ARGV[1] a fresh random generation, used only if the hash exists without one

Example: EVALSHA <sha> 1 tg:{a42} 9b2e41d0  ->  "9b2e41d0" (or nil: restore)

A process reads the generation before it loads an account from the database
and passes it to charge.lua with every request; any change to the account
deletes the field (quotas.redis_backend.RedisBackend.invalidate), so a process
holding an older copy gets "stale" on its next request and reloads. A hash
that is gone (Redis lost its data, or evicted or expired it) has no counts
either: it comes back only through restore.lua, with the ledger's.
]]
if #KEYS ~= 1 or #ARGV ~= 1 then
  return redis.error_reply("generation.lua: expected 1 key and 1 argument")
end
local current = redis.call("HGET", KEYS[1], "g")
if current then
  return current
end
if redis.call("EXISTS", KEYS[1]) == 0 then
  return false
end
redis.call("HSET", KEYS[1], "g", ARGV[1])
return ARGV[1]
