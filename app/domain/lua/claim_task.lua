-- claim_task: hand the agent's best ready task (priority, then oldest) to one caller.
-- A.agent  A.lease_ms  A.principal (the claimant)
-- A.cap (leases the agent may hold at once; absent = no cap)
-- Returns {outcome = 'ok', task} (task.lease_token: this lease's fencing token)
--       | {outcome = 'empty', next_due_ms (ms until the next scheduled task, if any)}
--       | {outcome = 'capped'} (the agent already holds A.cap leases).
-- Guarantees: a task leaves the queue and gains its lease in the same step, so no two
-- callers on any worker can receive it, and an agent never holds more than A.cap;
-- blocked, gated and scheduled tasks are never queued.
settle()
-- When the agent last asked for work, found or not (GET /agents).
redis.call('HSET', key('agent_activity', A.agent), 'last_claim_at', NOW_ISO)
if A.cap and tonumber(redis.call('HGET', key('running'), A.agent) or '0') >= A.cap then
  return cjson.encode({outcome = 'capped'})
end
local queue = key('queue', A.agent)
local BACKLOG_BUDGET = 1000

local function empty()
  local next_due = redis.call('ZRANGE', key('scheduled'), 0, 0, 'WITHSCORES')
  return cjson.encode({outcome = 'empty',
    next_due_ms = next_due[2] and (tonumber(next_due[2]) - NOW) or nil})
end

while true do
  local head = redis.call('ZRANGE', queue, 0, 0)
  if #head == 0 then
    -- Before answering "nothing ready", apply a backlog of expired leases and due
    -- schedules beyond the usual settle budget (after an outage, say): one of them may
    -- be this agent's.
    local due = redis.call('ZRANGEBYSCORE', key('leases'), '-inf', NOW, 'LIMIT', 0,
      BACKLOG_BUDGET)
    for _, id in ipairs(due) do expire_lease(id) end
    local starting = redis.call('ZRANGEBYSCORE', key('scheduled'), '-inf', NOW, 'LIMIT', 0,
      BACKLOG_BUDGET)
    for _, id in ipairs(starting) do start_scheduled(id) end
    if #due + #starting == 0 then return empty() end
    head = redis.call('ZRANGE', queue, 0, 0)
    if #head == 0 then return empty() end
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
