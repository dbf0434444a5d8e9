-- wrk request builder for the service scenarios. BENCH_METHOD, BENCH_PATH, BENCH_BODY and
-- BENCH_KEY come from the environment so one script serves every scenario.
local method = os.getenv("BENCH_METHOD") or "GET"
local path = os.getenv("BENCH_PATH") or "/"
local body = os.getenv("BENCH_BODY")
local key = os.getenv("BENCH_KEY")
-- BENCH_KEYS=N rotates among N principals (BENCH_KEY with a 4-digit suffix), so limits
-- at realistic sizes are exercised per principal instead of one raised out of the way.
local rotate = tonumber(os.getenv("BENCH_KEYS") or "0")
local counter = 0

request = function()
  local headers = {}
  if rotate > 0 then
    counter = counter + 1
    headers["X-API-Key"] = string.format("%s%04d", key, counter % rotate)
  elseif key and key ~= "" then
    headers["X-API-Key"] = key
  end
  if body and body ~= "" then headers["Content-Type"] = "application/json" end
  return wrk.format(method, path, headers, (body ~= "" and body) or nil)
end

done = function(summary, latency, requests)
  io.write(string.format("BENCH requests=%d errors=%d non2xx=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout, summary.errors.status,
    latency:percentile(50), latency:percentile(99)))
end
