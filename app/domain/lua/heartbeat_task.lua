-- heartbeat_task: extend the lease of a task its caller holds.
-- A.task_id  A.principal  A.lease_ms (absent = the lease the claim chose, or
-- CFG.lease_ms for tasks claimed before leases were kept)  A.lease_token (absent = none)
-- Returns {outcome = 'ok', task} | {outcome = 'not_found'}
--       | {outcome = 'conflict', status} | {outcome = 'forbidden'} (not the holder)
--       | {outcome = 'lease_lost', status} (A.lease_token is not the current lease's).
-- Guarantees: an expired lease is requeued first, so a late heartbeat gets 409 and can
-- never revive a task that another caller may already hold.
settle()
local id = A.task_id
local task = fresh_task(id)
if not task.status then return cjson.encode({outcome = 'not_found'}) end
local lost = lease_lost(task)
if lost then return lost end
if task.status ~= 'in_progress' then
  return cjson.encode({outcome = 'conflict', status = task.status})
end
if task.claimed_by ~= A.principal then return cjson.encode({outcome = 'forbidden'}) end
local lease_ms = A.lease_ms or tonumber(task.lease_ms) or CFG.lease_ms
local expires = NOW + lease_ms
add_timer('leases', expires, id)
local fields = {'lease_expires_at', iso(expires), 'lease_ms', tostring(lease_ms),
  unpack(touched(id, task))}
redis.call('HSET', key('task', id), unpack(fields))
for i = 1, #fields, 2 do task[fields[i]] = fields[i + 1] end
-- When the task's agent last showed it is alive (GET /agents).
redis.call('HSET', key('agent_activity', task.assigned_to), 'last_heartbeat_at', NOW_ISO)
return cjson.encode({outcome = 'ok', task = task})
