-- read_waits: what a scheduled or blocked task waits for, as of now.
-- A.task_id
-- Returns {outcome = 'ok', status, run_at (absent when none), unfinished ([{task_id,
-- status}] of its dependencies not completed yet, in the order given)} | {outcome =
-- 'not_found'}.
-- Guarantees: read only, after applying what fell due to this task.
settle()
local task = fresh_task(A.task_id)
if not task.status then return cjson.encode({outcome = 'not_found'}) end
local unfinished = {}
if task.status == 'blocked' and task.depends_on then
  for _, dep in ipairs(cjson.decode(task.depends_on)) do
    local status = redis.call('HGET', key('task', dep), 'status')
    if status ~= 'completed' then
      unfinished[#unfinished + 1] = {task_id = dep, status = status or 'expired'}
    end
  end
end
return cjson.encode({outcome = 'ok', status = task.status, run_at = task.run_at,
  unfinished = unfinished})
