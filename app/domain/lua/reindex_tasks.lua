-- reindex_tasks: put stored tasks back in their status and route (type and agent)
-- indexes (for a store written before them; see app/domain/reindex.py).
-- A.task_ids
-- Returns {outcome = 'ok', indexed} (the tasks found and indexed).
-- How: each index is scored by the task's seq, as create_task and move() score it; the
-- task leaves every other status index, so an entry left by an older layout or a
-- half-done move cannot list it twice.
-- Guarantees: idempotent; a task whose hash is gone (purged since the SCAN) or lacks a
-- field the indexes need is skipped. Nothing is settled: a rebuild changes no task, it
-- only files each one as it is when this call runs.
local indexed = 0
for _, id in ipairs(A.task_ids) do
  local row = redis.call('HMGET', key('task', id), 'status', 'type', 'assigned_to', 'seq')
  local status, task_type, agent, seq = row[1], row[2], row[3], row[4]
  if status and task_type and agent and seq then
    for _, other in ipairs(STATUSES) do
      if other ~= status then redis.call('ZREM', key('by_status', other), id) end
    end
    redis.call('ZADD', key('by_status', status), seq, id)
    file_route(id, task_type, agent, seq)
    indexed = indexed + 1
  end
end
return cjson.encode({outcome = 'ok', indexed = indexed})
