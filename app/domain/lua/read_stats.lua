-- read_stats: every counter /health and /stats show, after settling what fell due.
-- A.settle_budget
-- Returns {outcome = 'ok', counts, totals, agents (queued per agent), pending_approvals,
-- now (Redis' clock), memory {used, max} (bytes; max 0 = no limit),

-- webhooks = {group (XINFO GROUPS fields of the deliverers' group,
-- absent when missing), due (pending deliveries), totals (delivered / dead / attempts)}}.
-- Guarantees: the counters are exact (the scripts that move tasks keep them), so
-- nothing is recounted; at most A.settle_budget entries of each kind are settled first.
settle(A.settle_budget)
local agents = {}
for _, agent in ipairs(redis.call('SMEMBERS', key('agents'))) do
  agents[agent] = redis.call('ZCARD', key('queue', agent))
end
-- The deliverers' backlog rides along, so /health stays one round trip.
local webhooks = {due = redis.call('ZCARD', key('deliveries_due')),
  totals = hgetall(key('delivery_totals'))}
local groups = redis.pcall('XINFO', 'GROUPS', key('events'))
if type(groups) == 'table' and not groups.err then
  for _, flat in ipairs(groups) do
    local group = as_map(flat)
    if group.name == DELIVERY_GROUP then webhooks.group = group end
  end
end
return cjson.encode({outcome = 'ok', counts = hgetall(key('counts')),
  totals = hgetall(key('totals')), agents = agents,
  pending_approvals = redis.call('ZCARD', key('approvals_pending')), now = NOW_ISO,
  memory = memory(), webhooks = webhooks})
