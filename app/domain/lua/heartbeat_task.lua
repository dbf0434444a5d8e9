-- heartbeat_task: extend the lease of a task its caller holds.
-- ARGV[3] task id  ARGV[4] new lease (ms), '' = the lease the claim chose
-- ARGV[5] principal  ARGV[6] default lease (ms), for tasks claimed before leases were kept
-- Returns {'ok', task_flat} | {'not_found'} | {'conflict', status} | {'forbidden'}.
-- Guarantees: an expired lease is requeued first, so a late heartbeat gets 409 and can
-- never revive a task that another caller may already hold.
settle()
local id = ARGV[3]
local task = fresh_task(id)
if not task.status then return {'not_found'} end
if task.status ~= 'in_progress' then return {'conflict', task.status} end
if task.claimed_by ~= ARGV[5] then return {'forbidden'} end
local lease_ms = tonumber(ARGV[4]) or tonumber(task.lease_ms) or tonumber(ARGV[6])
local expires = NOW + lease_ms
redis.call('ZADD', key('leases'), expires, id)
redis.call('HSET', key('task', id), 'lease_expires_at', iso(expires), 'lease_ms',
  tostring(lease_ms), 'updated_at', NOW_ISO)
return {'ok', select(2, hgetall(key('task', id)))}
