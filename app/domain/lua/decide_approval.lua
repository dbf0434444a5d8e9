-- decide_approval: approve (the task goes on: scheduled or queued) or reject (cancel
-- it), exactly once.
-- A.approval_id  A.decision ('approved' | 'rejected')  A.principal (the decider)
-- A.reason (for a rejection; absent = none given)  A.comment (absent = none)
-- Returns {outcome = 'ok', approval, task (absent when the task is gone)}
--       | {outcome = 'not_found'} | {outcome = 'conflict', status, approval}
--       | {outcome = 'forbidden'} (four eyes: the requester may reject, i.e. withdraw,
--         but not approve).
-- Guarantees: the first decision to run wins; every later one sees a closed approval.
-- Due timeouts are applied first (this approval's whatever the backlog), so a late
-- approval finds 'timeout'. The approval, its history entry, the task, its queue entry
-- and the events (approval.<decision> then task.<status>) change together.
settle()
local aid, decision, principal = A.approval_id, A.decision, A.principal
settle_approval(aid)
local approval = hgetall(key('approval', aid))
if not approval.status then return cjson.encode({outcome = 'not_found'}) end
if approval.status ~= 'pending' then
  return cjson.encode({outcome = 'conflict', status = approval.status, approval = approval})
end
if decision == 'approved' and approval.requested_by == principal then
  return cjson.encode({outcome = 'forbidden'})
end
local reason = A.reason or 'no reason given'
local fields = {}
if A.comment then fields = {'comment', A.comment} end
if decision == 'rejected' then
  fields[#fields + 1] = 'rejection_reason'
  fields[#fields + 1] = reason
end
close_approval(aid, decision, principal, fields)
local task = hgetall(key('task', approval.task_id))
if task.status == 'awaiting_approval' then
  if decision == 'approved' then
    release(approval.task_id, task)
  else
    move(approval.task_id, task, 'cancelled', {'error', 'approval rejected: ' .. reason})
  end
end
task = hgetall(key('task', approval.task_id))
return cjson.encode({outcome = 'ok', approval = hgetall(key('approval', aid)),
  task = task.status and task or nil})
