-- rate_hit: the rate limiter's hit on its own, for a request with no operation to ride
-- on (app/rate_storage.py). A.hit: as lib.lua's rate_window() takes it.
-- Returns {outcome = 'ok', rate = {taken, previous, its ttl, current, its ttl}}.
return cjson.encode({outcome = 'ok', rate = rate_window(A.hit)})
