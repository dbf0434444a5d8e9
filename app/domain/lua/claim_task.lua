-- claim_task: hand the agent's best ready task (priority, then oldest) to one caller.
-- A.agent  A.lease_ms  A.principal (the claimant)
-- Returns {outcome = 'ok', task} | {outcome = 'empty'} when nothing is ready.
-- Guarantees: a task leaves the queue and gains its lease in the same step, so no two
-- callers on any worker can receive it; tasks awaiting approval are never queued.
settle()
-- When the agent last asked for work, found or not (GET /agents).
redis.call('HSET', key('agent_activity', A.agent), 'last_claim_at', NOW_ISO)
local queue = key('queue', A.agent)
local LEASE_BACKLOG_BUDGET = 1000
local EMPTY = cjson.encode({outcome = 'empty'})
while true do
  local head = redis.call('ZRANGE', queue, 0, 0)
  if #head == 0 then
    -- Before answering "nothing ready", requeue a backlog of expired leases beyond the
    -- usual settle budget (after an outage, say): one of them may be this agent's.
    local due = redis.call('ZRANGEBYSCORE', key('leases'), '-inf', NOW, 'LIMIT', 0,
      LEASE_BACKLOG_BUDGET)
    if #due == 0 then return EMPTY end
    for _, id in ipairs(due) do expire_lease(id) end
    head = redis.call('ZRANGE', queue, 0, 0)
    if #head == 0 then return EMPTY end
  end
  local id = head[1]
  local task = hgetall(key('task', id))
  if task.status == 'assigned' then
    move(id, task, 'in_progress', {'started_at', NOW_ISO, 'claimed_by', A.principal}, nil,
      A.lease_ms)
    return cjson.encode({outcome = 'ok', task = hgetall(key('task', id))})
  end
  redis.call('ZREM', queue, id) -- a stale entry; never hand it out
end
