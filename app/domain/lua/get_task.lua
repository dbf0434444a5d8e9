-- get_task: one task as of now.
-- A.task_id
-- Returns {outcome = 'ok', task} | {outcome = 'not_found'} (unknown or expired).
-- Guarantees: the task is shown as of now whatever settle() reached: its expired lease
-- is requeued first, and a task past its TTL is purged and reported not_found.
settle()
local task = fresh_task(A.task_id)
if not task.status then return cjson.encode({outcome = 'not_found'}) end
return cjson.encode({outcome = 'ok', task = task})
