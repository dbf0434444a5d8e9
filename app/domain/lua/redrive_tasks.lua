-- redrive_tasks: retry the dead letters that match, oldest first (admin).
-- A.status ('failed' | 'cancelled')  A.task_type  A.assigned_to (absent = any)
-- A.limit (tasks retried at most)  A.scan_budget (dead letters examined at most)
-- Oldest first: the status index is in creation order.
-- Returns {outcome = 'ok', task_ids} (the tasks retried, in that order).
-- Guarantees: all or nothing, like every script; each task is retried as retry_task
-- would (tasks that never passed their approval gate, or whose dependency failed or was
-- cancelled, are left alone).
settle()
local index = key('by_status', A.status)
local retried = {}
for _, id in ipairs(redis.call('ZRANGE', index, 0, A.scan_budget - 1)) do
  if #retried >= A.limit then break end
  local task = read_task(id)
  if task.expires_ms and tonumber(task.expires_ms) <= NOW then
    purge_task(id) -- past its TTL: gone, never revived
  elseif (not A.task_type or task.type == A.task_type)
      and (not A.assigned_to or task.assigned_to == A.assigned_to)
      and not retry(id, task) then
    retried[#retried + 1] = id
  end
end
return cjson.encode({outcome = 'ok', task_ids = retried})
