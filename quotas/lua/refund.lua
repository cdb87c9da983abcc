--[[
refund.lua: give back quota units reserved in a window, if that window is
still the current one for the field (a refund never touches another window).

KEYS[1] the account's hash ("tg:{a42}")
ARGV[1] units to give back
then pairs: field, window id   (e.g. "qd" "20261126" "qm" "202611")

Example: EVALSHA <sha> 1 tg:{a42} 5000 qd 20261126 qm 202611  ->  2 (fields changed)
]]
if #KEYS ~= 1 or #ARGV < 3 or #ARGV % 2 ~= 1 then
  return redis.error_reply("refund.lua: expected 1 key, units and field/window pairs")
end
local units = tonumber(ARGV[1])
local changed = 0
for i = 2, #ARGV, 2 do
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
return changed
