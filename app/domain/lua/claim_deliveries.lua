-- claim_deliveries: lease up to A.limit due deliveries to a deliverer for A.lease_ms.
-- Returns {outcome = 'ok', claimed = [{delivery, webhook}] (attempts already counted),
--   now_ms (Redis' clock, for the webhook-timestamp header)}.
-- Guarantees: a leased delivery falls due again when its lease ends, so the attempt of a
-- deliverer that died is made again by another, with the same delivery id (webhook-id).
-- Deliveries whose subscription is gone, or that are no longer pending, are dropped.
local due = key('deliveries_due')
local claimed = {}
for _, did in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', NOW, 'LIMIT', 0, A.limit)) do
  local dk = key('delivery', did)
  local d = hgetall(dk)
  local w = d.webhook_id and hgetall(key('webhook', d.webhook_id)) or {}
  if d.status ~= 'pending' or not w.webhook_id then
    redis.call('ZREM', due, did)
  else
    redis.call('ZADD', due, NOW + A.lease_ms, did)
    d.attempts = tostring(redis.call('HINCRBY', dk, 'attempts', 1))
    redis.call('HINCRBY', key('delivery_totals'), 'attempts', 1)
    claimed[#claimed + 1] = {delivery = d, webhook = w}
  end
end
return cjson.encode({outcome = 'ok', claimed = claimed, now_ms = NOW})
