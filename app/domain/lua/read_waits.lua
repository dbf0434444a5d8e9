-- read_waits: what a scheduled or blocked task waits for, as of now.
-- A.task_id
-- Returns {outcome = 'ok', status, run_at (absent when none), unfinished ([{task_id,
-- status}] of its dependencies not completed yet, in the order given)} | {outcome =
-- 'not_found'}. A dependency that completed (and perhaps expired since) is not named.
-- Guarantees: read only, after applying what fell due to this task.
settle()
local task = fresh_task(A.task_id)
if not task.status then return cjson.encode({outcome = 'not_found'}) end
return cjson.encode({outcome = 'ok', status = task.status, run_at = task.run_at,
  unfinished = unfinished_dependencies(A.task_id, task)})
