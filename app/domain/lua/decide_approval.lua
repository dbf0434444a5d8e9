-- decide_approval: approve (queue the task) or reject (cancel it), exactly once.
-- ARGV[3] approval id  ARGV[4] 'approved' | 'rejected'  ARGV[5] deciding principal
-- ARGV[6] rejection reason  ARGV[7] comment
-- Returns {'ok', approval_flat, task_flat} | {'not_found'} | {'conflict', status}
--       | {'forbidden'} (four eyes: the requester may reject but not approve).
-- Guarantees: the first decision to run wins; every later one sees a closed approval.
-- Due timeouts are applied first, so a late approval finds 'timeout'.
settle()
local aid, decision, principal = ARGV[3], ARGV[4], ARGV[5]
local approval = hgetall(key('approval', aid))
if not approval.status then return {'not_found'} end
if approval.status ~= 'pending' then return {'conflict', approval.status} end
if decision == 'approved' and approval.requested_by == principal then return {'forbidden'} end
local fields = {}
if ARGV[7] ~= '' then fields = {'comment', ARGV[7]} end
if decision == 'rejected' then
  fields[#fields + 1] = 'rejection_reason'
  fields[#fields + 1] = ARGV[6] ~= '' and ARGV[6] or 'rejected'
end
close_approval(aid, decision, principal, fields)
local task = hgetall(key('task', approval.task_id))
if task.status == 'awaiting_approval' then
  if decision == 'approved' then
    move(approval.task_id, task, 'assigned')
  else
    move(approval.task_id, task, 'cancelled',
      {'error', 'approval rejected: ' .. (ARGV[6] ~= '' and ARGV[6] or 'no reason given')})
  end
end
return {'ok', select(2, hgetall(key('approval', aid))),
  select(2, hgetall(key('task', approval.task_id)))}
