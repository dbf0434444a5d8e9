-- delete_webhook: remove a subscription with its deliveries (A.webhook_id).
-- Returns {outcome = 'ok'} | {outcome = 'not_found'}.
-- Guarantees: nothing is delivered to it after this call returns (pending deliveries
-- leave the schedule; an attempt already under way finds the subscription gone).
local id = A.webhook_id
if redis.call('DEL', key('webhook', id)) == 0 then
  return cjson.encode({outcome = 'not_found'})
end
redis.call('ZREM', key('webhooks'), id)
local listed = key('deliveries', id)
for _, did in ipairs(redis.call('ZRANGE', listed, 0, -1)) do
  redis.call('ZREM', key('deliveries_due'), did)
  redis.call('DEL', key('delivery', did))
end
redis.call('DEL', listed)
return cjson.encode({outcome = 'ok'})
