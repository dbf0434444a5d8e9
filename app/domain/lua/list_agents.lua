-- list_agents: every agent that had a queue or is named in A.routed, with its work.
-- A.routed (agents the routing table names)  A.settle_budget
-- Returns {outcome = 'ok', agents = [{agent, queued, in_progress, last_claim_at,
-- last_heartbeat_at}] sorted by name}.
-- Guarantees: settles first, so a task whose lease ran out counts as queued, not running.
-- in_progress is counted from the running tasks (one read each): bounded by the tasks
-- running now, not by the tasks stored.
settle(A.settle_budget)
local names = {}
for _, agent in ipairs(redis.call('SMEMBERS', key('agents'))) do names[agent] = true end
for _, agent in ipairs(A.routed) do names[agent] = true end
local running = {}
for _, id in ipairs(redis.call('ZRANGE', key('leases'), 0, -1)) do
  local agent = redis.call('HGET', key('task', id), 'assigned_to')
  if agent then
    running[agent] = (running[agent] or 0) + 1
    names[agent] = true
  end
end
local sorted = {}
for agent in pairs(names) do sorted[#sorted + 1] = agent end
table.sort(sorted)
local rows = {}
for _, agent in ipairs(sorted) do
  local seen = redis.call('HMGET', key('agent_activity', agent), 'last_claim_at',
    'last_heartbeat_at')
  rows[#rows + 1] = {agent = agent, queued = redis.call('ZCARD', key('queue', agent)),
    in_progress = running[agent] or 0, last_claim_at = seen[1] or cjson.null,
    last_heartbeat_at = seen[2] or cjson.null}
end
return cjson.encode({outcome = 'ok', agents = rows})
