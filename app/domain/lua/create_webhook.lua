-- create_webhook: store a new subscription; make sure deliverers have a group to read.
-- A.webhook       its fields, an object of strings (webhook_id, url, events, format, ...)
-- A.max_webhooks  how many subscriptions one deployment may hold
-- Returns {outcome = 'ok', webhook} | {outcome = 'conflict'} (too many subscriptions).
-- Guarantees: the consumer group exists (at the stream's end) as soon as a subscription
-- does, so events after this call are delivered even if no deliverer runs yet.
if redis.call('ZCARD', key('webhooks')) >= A.max_webhooks then
  return cjson.encode({outcome = 'conflict'})
end
local w = A.webhook
local out = {'created_at', NOW_ISO}
for name, value in pairs(w) do out[#out + 1] = name; out[#out + 1] = value end
redis.call('HSET', key('webhook', w.webhook_id), unpack(out))
redis.call('ZADD', key('webhooks'), NOW, w.webhook_id)
-- BUSYGROUP (it exists already) is the usual answer; nothing to do then.
redis.pcall('XGROUP', 'CREATE', key('events'), DELIVERY_GROUP, '$', 'MKSTREAM')
return cjson.encode({outcome = 'ok', webhook = hgetall(key('webhook', w.webhook_id))})
