--[[
drain.lua: hand an account's usage to a flusher as a batch with a token, or
the batch handed out before and not yet acknowledged (ack.lua), whose token
the ledger may already hold.

KEYS[1] the account's usage ("tg:{a42}:u")  KEYS[2] its batch ("tg:{a42}:b")
ARGV[1] a fresh token

Example: EVALSHA <sha> 2 tg:{a42}:u tg:{a42}:b 3f9a...  ->
         {"17:20783:r", "12", "17:20783:d", "28", "#", "3f9a...", "@", "1795694400123"}

Reply: the batch's fields (HGETALL): the usage fields of charge.lua, "#" its
token and "@" when it was first handed out (ms, the server's clock); empty
when there is nothing. Charges that come after write a new KEYS[1].
]]
if #KEYS ~= 2 or #ARGV ~= 1 then
  return redis.error_reply("drain.lua: expected 2 keys and a token")
end
if redis.call("EXISTS", KEYS[2]) == 0 then
  if redis.call("EXISTS", KEYS[1]) == 0 then
    return {}
  end
  redis.call("RENAME", KEYS[1], KEYS[2])
  local time = redis.call("TIME")
  redis.call("HSET", KEYS[2], "#", ARGV[1], "@", tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000))
end
return redis.call("HGETALL", KEYS[2])
