-- retry_delivery: make a delivery pending and due now, with a fresh max age.
-- A.webhook_id  A.delivery_id
-- Returns {outcome = 'ok', delivery} | {outcome = 'not_found'}.
-- Guarantees: the retried delivery keeps its id, so the receiver sees the same webhook-id.
local dk = key('delivery', A.delivery_id)
if redis.call('HGET', dk, 'webhook_id') ~= A.webhook_id then
  return cjson.encode({outcome = 'not_found'})
end
redis.call('HSET', dk, 'status', 'pending', 'first_due_ms', tostring(NOW),
  'next_attempt_at', NOW_ISO)
redis.call('ZADD', key('deliveries_due'), NOW, A.delivery_id)
return cjson.encode({outcome = 'ok', delivery = hgetall(dk)})
