-- set_task_status: one state-machine transition requested by a client (PATCH, cancel).
-- ARGV[3] task id  ARGV[4] requested status  ARGV[5] error ('' = none)
-- ARGV[6] principal  ARGV[7] lease (ms) when starting  ARGV[8] '1' when the caller may
-- report for another principal's running task (admins)
-- Returns {'ok', task_flat} | {'not_found'} | {'conflict', status} | {'forbidden'}.
-- Allowed moves are ALLOWED (model.CLIENT_MOVES); awaiting_approval -> cancelled
-- withdraws the pending approval. Leaving awaiting_approval any other way takes a
-- decision on its approval; back to assigned only when a lease expires.
settle()
local id, to, err, principal = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local task = fresh_task(id)
if not task.status then return {'not_found'} end
local allowed = ALLOWED[task.status]
if not (allowed and allowed[to]) then return {'conflict', task.status} end
-- Only the holder of a running task (or an admin) reports its outcome: once a lease
-- expired and another agent claimed the task, the first agent's late report must not
-- finish the second one's work. Cancelling stays open to every agent: people stop work.
if task.status == 'in_progress' and (to == 'completed' or to == 'failed')
    and task.claimed_by and task.claimed_by ~= principal and ARGV[8] ~= '1' then
  return {'forbidden'}
end
local fields = {}
if err ~= '' then fields = {'error', err} end
if to == 'in_progress' then
  fields[#fields + 1] = 'started_at'; fields[#fields + 1] = NOW_ISO
  fields[#fields + 1] = 'claimed_by'; fields[#fields + 1] = principal
end
if task.status == 'awaiting_approval' and task.approval_id then
  local approval = hgetall(key('approval', task.approval_id))
  if approval.status == 'pending' then
    close_approval(task.approval_id, 'rejected', principal,
      {'rejection_reason', err ~= '' and err or 'task cancelled'})
  end
end
move(id, task, to, fields, nil, tonumber(ARGV[7]))
return {'ok', select(2, hgetall(key('task', id)))}
