-- decide_approval: approve (queue the task) or reject (cancel it), exactly once.
-- A.approval_id  A.decision ('approved' | 'rejected')  A.principal (the decider)
-- A.decider_identities (the decider and its token's `act` chain, normalised)
-- A.act (the decider's delegation chain, recorded as decided_by_act; absent = none)
-- A.reason (for a rejection; absent = none given)  A.comment (absent = none)
-- Returns {outcome = 'ok', approval, task (absent when the task is gone)}
--       | {outcome = 'not_found'} | {outcome = 'conflict', status, approval}
--       | {outcome = 'forbidden'} (four eyes: the requester may reject, i.e. withdraw,
--         but not approve).
-- Guarantees: the first decision to run wins; every later one sees a closed approval.
-- Due timeouts are applied first (this approval's whatever the backlog), so a late
-- approval finds 'timeout'. The approval, its history entry, the task, its queue entry
-- and the events (approval.<decision> then task.<status>) change together.
-- Four eyes: whether anyone behind the decision is anyone behind the request. Approvals
-- stored before identities were kept compare by the requester's id, lower-cased.
local function same_person(requester_identities, decider_identities)
  local requester = {}
  for _, id in ipairs(requester_identities) do requester[id] = true end
  for _, id in ipairs(decider_identities) do
    if requester[id] then return true end
  end
  return false
end

settle()
local aid, decision, principal = A.approval_id, A.decision, A.principal
settle_approval(aid)
local approval = hgetall(key('approval', aid))
if not approval.status then return cjson.encode({outcome = 'not_found'}) end
if approval.status ~= 'pending' then
  return cjson.encode({outcome = 'conflict', status = approval.status, approval = approval})
end
local requester = approval.requester_identities
requester = requester and cjson.decode(requester) or {string.lower(approval.requested_by)}
if decision == 'approved' and same_person(requester, A.decider_identities) then
  return cjson.encode({outcome = 'forbidden'})
end
local reason = A.reason or 'no reason given'
local fields = {}
if A.comment then fields = {'comment', A.comment} end
if A.act then
  fields[#fields + 1] = 'decided_by_act'
  fields[#fields + 1] = cjson.encode(A.act)
end
if decision == 'rejected' then
  fields[#fields + 1] = 'rejection_reason'
  fields[#fields + 1] = reason
end
close_approval(aid, decision, principal, fields)
local task = hgetall(key('task', approval.task_id))
if task.status == 'awaiting_approval' then
  if decision == 'approved' then
    move(approval.task_id, task, 'assigned')
  else
    move(approval.task_id, task, 'cancelled', {'error', 'approval rejected: ' .. reason})
  end
end
task = hgetall(key('task', approval.task_id))
return cjson.encode({outcome = 'ok', approval = hgetall(key('approval', aid)),
  task = task.status and task or nil})
