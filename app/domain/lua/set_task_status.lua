-- set_task_status: one state-machine move requested by a client (PATCH, cancel).
-- A.task_id  A.status (the one requested)  A.principal  A.error (absent = none)
-- A.for_any_holder (true: the caller may report for another principal's running task,
-- as admins may). A.agents (a scoped API key's agents; absent = any): a task routed to
-- another agent is out_of_scope. A.lease_token (absent = none). Starting a task leases it
-- for CFG.lease_ms.
-- Returns {outcome = 'ok', task} | {outcome = 'not_found'}
--       | {outcome = 'conflict', status} | {outcome = 'forbidden'} | {outcome = 'out_of_scope'}
--       | {outcome = 'lease_lost', status} (A.lease_token is not the current lease's)
--       | {outcome = 'capped', status, agent, cap} (starting it would lease the agent more
--         tasks than its ORCHESTRATOR_AGENT_CONCURRENCY cap, as a claim would).
-- Allowed moves are ALLOWED (model.CLIENT_MOVES); awaiting_approval -> cancelled
-- withdraws the pending approval. Leaving awaiting_approval any other way takes a
-- decision on its approval; back to assigned only when a lease expires.
settle()
local id, to, err, principal = A.task_id, A.status, A.error, A.principal
local task = fresh_task(id)
if not task.status then return cjson.encode({outcome = 'not_found'}) end
if A.agents then
  local mine = false
  for _, agent in ipairs(A.agents) do mine = mine or agent == task.assigned_to end
  if not mine then return cjson.encode({outcome = 'out_of_scope'}) end
end
local lost = lease_lost(task)
if lost then return lost end
local allowed = ALLOWED[task.status]
if not (allowed and allowed[to]) then
  return cjson.encode({outcome = 'conflict', status = task.status})
end
-- Only the holder of a running task (or an admin) reports its outcome: once a lease
-- expired and another agent claimed the task, the first agent's late report must not
-- finish the second one's work. Cancelling stays open to every agent: people stop work.
if task.status == 'in_progress' and (to == 'completed' or to == 'failed')
    and task.claimed_by and task.claimed_by ~= principal and not A.for_any_holder then
  return cjson.encode({outcome = 'forbidden'})
end
local fields = {}
if err then fields = {'error', err} end
if to == 'in_progress' then
  if at_cap(task.assigned_to) then
    return cjson.encode({outcome = 'capped', status = task.status, agent = task.assigned_to,
      cap = CFG.agent_caps[task.assigned_to]})
  end
  fields[#fields + 1] = 'started_at'; fields[#fields + 1] = NOW_ISO
  fields[#fields + 1] = 'claimed_by'; fields[#fields + 1] = principal
end
if task.status == 'awaiting_approval' and task.approval_id then
  local approval = hgetall(key('approval', task.approval_id))
  if approval.status == 'pending' then
    close_approval(task.approval_id, 'rejected', principal,
      {'rejection_reason', err or 'task cancelled'})
  end
end
return cjson.encode({outcome = 'ok', task = move(id, task, to, fields, nil, CFG.lease_ms)})
