-- wrk report hook for bench/ratelimit: after wrk's own summary, print one line
-- "BENCH-JSON {...}" with the counts and latency percentiles (microseconds)
-- that load.py parses. wrk counts responses with a status >= 400 in
-- errors.status; everything else is socket errors.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
