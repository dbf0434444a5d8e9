-- retry_delivery: make a delivery pending and due now, with a fresh max age.
-- A.webhook_id  A.delivery_id
-- Returns {outcome = 'ok', delivery} | {outcome = 'not_found'}
--       | {outcome = 'conflict', status} (it was delivered: sending it again would count it
--         delivered twice and deliver a duplicate nobody asked for).
-- Guarantees: the retried delivery keeps its id, so the receiver sees the same webhook-id.
local dk = key('delivery', A.delivery_id)
local webhook_id, status = unpack(redis.call('HMGET', dk, 'webhook_id', 'status'))
if webhook_id ~= A.webhook_id then
  return cjson.encode({outcome = 'not_found'})
end
if status == 'delivered' then return cjson.encode({outcome = 'conflict', status = status}) end
-- A new series: a fresh max age, and the backoff starts over (retry_base: the attempts
-- made before it; an attempt still under way records its outcome but no schedule).
redis.call('HSET', dk, 'status', 'pending', 'first_due_ms', tostring(NOW),
  'next_attempt_at', NOW_ISO, 'retry_base', redis.call('HGET', dk, 'attempts') or '0')
redis.call('ZADD', key('deliveries_due'), NOW, A.delivery_id)
return cjson.encode({outcome = 'ok', delivery = hgetall(dk)})
