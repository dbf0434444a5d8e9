-- get_webhooks: one subscription (A.webhook_id) or every one, oldest first.
-- Returns {outcome = 'ok', webhooks = [...]} | {outcome = 'not_found'}.
-- The stored secret is sealed; Python drops it before anything leaves the domain.
local ids = A.webhook_id and {A.webhook_id} or redis.call('ZRANGE', key('webhooks'), 0, -1)
local found = {}
for _, id in ipairs(ids) do
  local w = hgetall(key('webhook', id))
  if w.webhook_id then found[#found + 1] = w end
end
if A.webhook_id and #found == 0 then return cjson.encode({outcome = 'not_found'}) end
return cjson.encode({outcome = 'ok', webhooks = found})
