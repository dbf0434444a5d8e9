-- record_attempt: the outcome of one attempt.
-- A.delivery_id  A.attempt (the attempts count its claim returned)  A.series (the
-- first_due_ms its claim saw: a manual retry starts a new series)  A.delivered (bool)
-- A.status_code (absent: no answer)  A.error (absent: none)  A.delay_ms (to the next try)
-- Returns {outcome = 'ok', delivery} | {outcome = 'not_found'}.
-- Guarantees: delivered and dead are final (until an explicit retry); the answer of an
-- attempt whose lease another deliverer took over, or that was under way when the
-- delivery was retried by hand, notes its error but leaves the newer schedule alone. Past ORCHESTRATOR_WEBHOOK_MAX_AGE a failure is dead. One
-- that finishes after falling out of its log's newest DELIVERIES_KEPT leaves it (fan_out
-- keeps it only while pending).
local dk = key('delivery', A.delivery_id)
local d = hgetall(dk)
if not d.status then return cjson.encode({outcome = 'not_found'}) end
if d.status ~= 'pending' then return cjson.encode({outcome = 'ok', delivery = d}) end
local due = key('deliveries_due')
local out = {'last_attempt_at', NOW_ISO}
if A.status_code then
  out[#out + 1] = 'last_status_code'; out[#out + 1] = tostring(A.status_code)
else
  redis.call('HDEL', dk, 'last_status_code')
end
if A.delivered then
  redis.call('HDEL', dk, 'last_error', 'next_attempt_at')
  out[#out + 1] = 'status'; out[#out + 1] = 'delivered'
  redis.call('ZREM', due, A.delivery_id)
  redis.call('HINCRBY', key('delivery_totals'), 'delivered', 1)
else
  out[#out + 1] = 'last_error'; out[#out + 1] = A.error or 'failed'
  if tonumber(d.attempts) == A.attempt and (A.series == nil or d.first_due_ms == A.series) then
    local next_ms = NOW + A.delay_ms
    if next_ms > tonumber(d.first_due_ms) + CFG.webhook_max_age_ms then
      out[#out + 1] = 'status'; out[#out + 1] = 'dead'
      redis.call('HDEL', dk, 'next_attempt_at')
      redis.call('ZREM', due, A.delivery_id)
      redis.call('HINCRBY', key('delivery_totals'), 'dead', 1)
    else
      out[#out + 1] = 'next_attempt_at'; out[#out + 1] = iso(next_ms)
      redis.call('ZADD', due, next_ms, A.delivery_id)
    end
  end
end
redis.call('HSET', dk, unpack(out))
local delivery = hgetall(dk)
local listed = key('deliveries', d.webhook_id)
if delivery.status ~= 'pending'
    and (redis.call('ZREVRANK', listed, A.delivery_id) or -1) >= DELIVERIES_KEPT then
  redis.call('ZREM', listed, A.delivery_id)
  redis.call('DEL', dk)
end
return cjson.encode({outcome = 'ok', delivery = delivery})
