--[[
ack.lua: forget a batch the ledger holds, if it is still the one with that
token (another flusher may have acknowledged it and drained a new one).

KEYS[1] the account's batch ("tg:{a42}:b")  ARGV[1] its token

Example: EVALSHA <sha> 1 tg:{a42}:b 3f9a...  ->  1 (deleted) or 0
]]
if #KEYS ~= 1 or #ARGV ~= 1 then
  return redis.error_reply("ack.lua: expected 1 key and a token")
end
if redis.call("HGET", KEYS[1], "#") == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
