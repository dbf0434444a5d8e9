-- decide_approval: approve (queue the task) or reject (cancel it), exactly once.
-- ARGV[3] approval id  ARGV[4] 'approved' | 'rejected'  ARGV[5] deciding principal
-- ARGV[6] rejection reason  ARGV[7] comment
-- Returns {'ok', approval_flat, task_flat} | {'not_found'}
--       | {'conflict', status, approval_flat} | {'forbidden'} (four eyes: the requester
--       may reject, i.e. withdraw, but not approve).
-- Guarantees: the first decision to run wins; every later one sees a closed approval.
-- Due timeouts are applied first (this approval's whatever the backlog), so a late
-- approval finds 'timeout'. The approval, its history entry, the task, its queue entry
-- and the events (approval.<decision> then task.<status>) change together.
settle()
local aid, decision, principal = ARGV[3], ARGV[4], ARGV[5]
settle_approval(aid)
local approval, approval_flat = hgetall(key('approval', aid))
if not approval.status then return {'not_found'} end
if approval.status ~= 'pending' then return {'conflict', approval.status, approval_flat} end
if decision == 'approved' and approval.requested_by == principal then return {'forbidden'} end
local reason = ARGV[6] ~= '' and ARGV[6] or nil
local fields = {}
if ARGV[7] ~= '' then fields = {'comment', ARGV[7]} end
if decision == 'rejected' then
  fields[#fields + 1] = 'rejection_reason'
  fields[#fields + 1] = reason or 'no reason given'
end
close_approval(aid, decision, principal, fields)
local task = hgetall(key('task', approval.task_id))
if task.status == 'awaiting_approval' then
  if decision == 'approved' then
    move(approval.task_id, task, 'assigned')
  else
    move(approval.task_id, task, 'cancelled',
      {'error', 'approval rejected: ' .. (reason or 'no reason given')})
  end
end
return {'ok', select(2, hgetall(key('approval', aid))),
  select(2, hgetall(key('task', approval.task_id)))}
