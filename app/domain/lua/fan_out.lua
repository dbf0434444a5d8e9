-- fan_out: turn events into deliveries, one per matching subscription, then acknowledge.
-- A.entries     [{event_id, event_type, data}], data the envelope as JSON (with event_id);
--               or {event_id, event_type, payload}: the service's own event, stamped here
-- A.webhook_id  deliver to this subscription only, whatever its filter (webhook.test)
-- A.ack         stream ids to XACK in the deliverers' group (absent: none)
-- Returns {outcome = 'ok', created (delivery ids made now)} | {outcome = 'not_found'} (A.webhook_id unknown).
-- Guarantees: a delivery's id is derived from (subscription, event), so an entry fanned
-- out twice (its deliverer died before XACK) never makes a second delivery, and every
-- attempt carries the same webhook-id. Deliveries and acknowledgements change together.
-- The log keeps a subscription's newest DELIVERIES_KEPT; one that falls out of them is
-- dropped if finished, else when it finishes (record_attempt): a pending one is owed.

local function matches(filters, event_type)
  for _, f in ipairs(filters) do
    if f == '*' or f == event_type then return true end
    local stem = string.sub(f, 1, -2)
    if string.sub(f, -2) == '.*' and string.sub(event_type, 1, #stem) == stem then
      return true
    end
  end
  return false
end

local subs = {}
local ids = A.webhook_id and {A.webhook_id} or redis.call('ZRANGE', key('webhooks'), 0, -1)
for _, id in ipairs(ids) do
  local w = hgetall(key('webhook', id))
  if w.webhook_id then
    w.filters = cjson.decode(w.events)
    subs[#subs + 1] = w
  end
end
if A.webhook_id and #subs == 0 then return cjson.encode({outcome = 'not_found'}) end

local created = {}
for _, e in ipairs(A.entries) do
  if not e.data then
    e.data = cjson.encode({event_id = e.event_id, event_type = e.event_type,
      source_agent = 'orchestrator', task_id = cjson.null, trace_id = cjson.null,
      priority = 'low', payload = e.payload, metadata = {}, timestamp = NOW_ISO})
  end
  for _, w in ipairs(subs) do
    if A.webhook_id or matches(w.filters, e.event_type) then
      local did = 'dlv_' .. string.sub(redis.sha1hex(w.webhook_id .. ':' .. e.event_id), 1, 24)
      local dk = key('delivery', did)
      if redis.call('EXISTS', dk) == 0 then
        redis.call('HSET', dk, 'delivery_id', did, 'webhook_id', w.webhook_id,
          'event_id', e.event_id, 'event_type', e.event_type, 'status', 'pending',
          'attempts', '0', 'created_at', NOW_ISO, 'first_due_ms', tostring(NOW),
          'next_attempt_at', NOW_ISO, 'data', e.data)
        redis.call('ZADD', key('deliveries_due'), NOW, did)
        local listed = key('deliveries', w.webhook_id)
        redis.call('ZADD', listed, NOW, did)
        -- Each insert moves at most one delivery out of the newest: the one now at that rank.
        local old = redis.call('ZREVRANGE', listed, DELIVERIES_KEPT, DELIVERIES_KEPT)[1]
        if old and redis.call('HGET', key('delivery', old), 'status') ~= 'pending' then
          redis.call('ZREM', listed, old)
          redis.call('DEL', key('delivery', old))
        end
        created[#created + 1] = did
      end
    end
  end
end
for _, id in ipairs(A.ack or {}) do redis.call('XACK', key('events'), DELIVERY_GROUP, id) end
return cjson.encode({outcome = 'ok', created = created})
