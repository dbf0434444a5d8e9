-- list_deliveries: a subscription's deliveries newest first (A.limit), or one of them
-- (A.delivery_id). Returns {outcome = 'ok', deliveries} | {outcome = 'not_found'}.
if redis.call('EXISTS', key('webhook', A.webhook_id)) == 0 then
  return cjson.encode({outcome = 'not_found'})
end
local ids = {A.delivery_id}
if not A.delivery_id then
  ids = redis.call('ZREVRANGE', key('deliveries', A.webhook_id), 0, A.limit - 1)
end
local found = {}
for _, did in ipairs(ids) do
  local d = hgetall(key('delivery', did))
  if d.webhook_id == A.webhook_id then found[#found + 1] = d end
end
if A.delivery_id and #found == 0 then return cjson.encode({outcome = 'not_found'}) end
return cjson.encode({outcome = 'ok', deliveries = found})
