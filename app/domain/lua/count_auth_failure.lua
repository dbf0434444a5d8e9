-- count_auth_failure: one failed authentication from a client address.
-- A.address  A.window (seconds the count lasts from the first failure)
-- Returns {outcome = 'ok', failures (in this window), ttl (seconds until it ends)}.
-- Guarantees: the counter is the one the limiter's hit reads (lib.lua, rate_window), so
-- an address over its limit is refused whatever credential it sends next.
local counter = key('auth_failures', A.address)
local failures = redis.call('INCR', counter)
if failures == 1 then redis.call('EXPIRE', counter, A.window) end
return cjson.encode({outcome = 'ok', failures = failures, ttl = redis.call('TTL', counter)})
