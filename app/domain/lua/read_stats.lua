-- read_stats: every counter /health, /stats and /metrics show, after settling what fell due.
-- A.settle_budget
-- Returns {outcome = 'ok', counts, totals, agents (queued per agent), oldest (per agent:
-- created_at of its oldest ready task), oldest_approval (requested_at of the oldest
-- pending approval, or absent), pending_approvals, now (Redis' clock), memory {used,
-- max} (bytes; max 0 = no limit), webhooks = {group (XINFO GROUPS fields of the
-- deliverers' group, absent when missing), due (pending deliveries), totals (delivered /
-- dead / attempts)}}.
-- Guarantees: the counters are exact (the scripts that move tasks keep them), so
-- nothing is recounted; at most A.settle_budget entries of each kind are settled first.
-- The oldest ready task is the oldest head among the priority bands: one read per band.
settle(A.settle_budget)
local agents, oldest = {}, {}
local bands = 0
for _ in pairs(PRIORITY_RANK) do bands = bands + 1 end
for _, agent in ipairs(redis.call('SMEMBERS', key('agents'))) do
  local queue = key('queue', agent)
  agents[agent] = redis.call('ZCARD', queue)
  for rank = 0, bands - 1 do
    local head = redis.call('ZRANGEBYSCORE', queue, string.format('%.0f', rank * 1e15),
      '(' .. string.format('%.0f', (rank + 1) * 1e15), 'LIMIT', 0, 1)
    if #head > 0 then
      -- ISO 8601 with a fixed width: the smallest string is the earliest time.
      local created = redis.call('HGET', key('task', head[1]), 'created_at')
      if created and (oldest[agent] == nil or created < oldest[agent]) then
        oldest[agent] = created
      end
    end
  end
end
local oldest_approval = cjson.null
local first = redis.call('ZRANGE', key('approvals_pending'), 0, 0)
if #first > 0 then
  oldest_approval = redis.call('HGET', key('approval', first[1]), 'requested_at') or cjson.null
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
-- Tasks stored per status: each status index's size (the scripts that move tasks keep
-- the indexes, so nothing is recounted).
local counts = {}
for _, status in ipairs(STATUSES) do
  counts[status] = redis.call('ZCARD', key('by_status', status))
end
return cjson.encode({outcome = 'ok', counts = counts,
  totals = hgetall(key('totals')), agents = agents, oldest = oldest,
  oldest_approval = oldest_approval,
  pending_approvals = redis.call('ZCARD', key('approvals_pending')), now = NOW_ISO,
  memory = memory(), webhooks = webhooks})
