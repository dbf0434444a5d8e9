-- retry_task: send one failed or cancelled task back to its agent's queue (admin), or to
-- what it still waits for first (a dependency not completed: blocked; its run time:
-- scheduled; lib.lua, retry).
-- A.task_id
-- Returns {outcome = 'ok', task} | {outcome = 'not_found'}
--       | {outcome = 'conflict', status} (not failed or cancelled)
--       | {outcome = 'not_approved', status} (it never passed its approval gate)
--       | {outcome = 'dependency_ended', status, dependency, dependency_status} (one of
--         its dependencies failed or was cancelled: retry that one first).
-- Guarantees: the task keeps its id and history; retry_count 0, no error, task.retried.
settle()
local id = A.task_id
local task = fresh_task(id)
if not task.status then return cjson.encode({outcome = 'not_found'}) end
if not RETRYABLE[task.status] then
  return cjson.encode({outcome = 'conflict', status = task.status})
end
local refused, dependency, dependency_status = retry(id, task)
if refused then
  return cjson.encode({outcome = refused, status = task.status, dependency = dependency,
    dependency_status = dependency_status})
end
return cjson.encode({outcome = 'ok', task = task})
