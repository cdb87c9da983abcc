-- wrk script for bench/ratelimit's many-keys load: every request carries the
-- next key of a file (one key a line, its path given after `--`), in
-- rotation; the report is wrk_report.lua's.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk_report.lua")

local requests, index = {}, 0

function init(args)
  for key in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format(nil, nil, {["Authorization"] = "Bearer " .. key})
  end
end

function request()
  index = index % #requests + 1
  return requests[index]
end
