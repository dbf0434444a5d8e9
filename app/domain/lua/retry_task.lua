-- retry_task: send one failed or cancelled task back to its agent's queue (admin).
-- A.task_id
-- Returns {outcome = 'ok', task} | {outcome = 'not_found'}
--       | {outcome = 'conflict', status} (not failed or cancelled)
--       | {outcome = 'not_approved', status} (it never passed its approval gate).
-- Guarantees: the task keeps its id and history; retry_count 0, no error, task.retried.
settle()
local id = A.task_id
local task = fresh_task(id)
if not task.status then return cjson.encode({outcome = 'not_found'}) end
if not RETRYABLE[task.status] then
  return cjson.encode({outcome = 'conflict', status = task.status})
end
if not retry(id, task) then
  return cjson.encode({outcome = 'not_approved', status = task.status})
end
return cjson.encode({outcome = 'ok', task = task})
