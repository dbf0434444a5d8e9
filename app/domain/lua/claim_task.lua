-- claim_task: hand the agent's best ready task (priority, then oldest) to one caller.
-- A.agent  A.lease_ms  A.principal (the claimant)
-- Returns {outcome = 'ok', task} (task.lease_token: this lease's fencing token)
--       | {outcome = 'empty', next_due_ms (ms until the next scheduled task, if any)}
--       | {outcome = 'capped'} (the agent already holds its CFG.agent_caps leases).
-- Guarantees: a task leaves the queue and gains its lease in the same step, so no two
-- callers on any worker can receive it, and an agent never holds more than its cap;
-- blocked, gated and scheduled tasks are never queued.
settle()
-- When the agent last asked for work, found or not (GET /agents).
redis.call('HSET', key('agent_activity', A.agent), 'last_claim_at', NOW_ISO)
local queue = key('queue', A.agent)
local BACKLOG_BUDGET = 1000

-- The next scheduled task's bound: a lower bound, so an agent may ask a little early.
local function empty()
  UNCHANGED = true
  local next_due = bounds().scheduled
  return cjson.encode({outcome = 'empty', next_due_ms = next_due and (next_due - NOW)})
end

-- Apply up to BACKLOG_BUDGET more of one kind of due entry; how many were applied.
local function backlog(kind, apply)
  if not due(kind) then return 0 end
  local ids = redis.call('ZRANGEBYSCORE', key(kind), '-inf', NOW, 'LIMIT', 0, BACKLOG_BUDGET)
  for _, id in ipairs(ids) do apply(id) end
  rebound(kind)
  return #ids
end

-- 'empty' and 'capped' hand out nothing: a re-send may run afresh (lib.lua, once). At
-- the cap, a backlog of expired leases beyond the usual settle budget is applied first:
-- one of them may be this agent's, which frees a place.
if at_cap(A.agent) and (backlog('leases', expire_lease) == 0 or at_cap(A.agent)) then
  UNCHANGED = true
  return cjson.encode({outcome = 'capped'})
end

while true do
  local head = redis.call('ZRANGE', queue, 0, 0)
  if #head == 0 then
    -- Before answering "nothing ready", apply a backlog of expired leases and due
    -- schedules beyond the usual settle budget (after an outage, say): one of them may
    -- be this agent's.
    if backlog('leases', expire_lease) + backlog('scheduled', start_scheduled) == 0 then
      return empty()
    end
    head = redis.call('ZRANGE', queue, 0, 0)
    if #head == 0 then return empty() end
  end
  local id = head[1]
  local task = read_task(id)
  if task.status == 'assigned' then
    task = move(id, task, 'in_progress', {'started_at', NOW_ISO, 'claimed_by', A.principal},
      nil, A.lease_ms)
    return cjson.encode({outcome = 'ok', task = task})
  end
  redis.call('ZREM', queue, id) -- a stale entry; never hand it out
end
