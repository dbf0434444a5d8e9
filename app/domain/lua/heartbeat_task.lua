-- heartbeat_task: extend the lease of a task its caller holds.
-- ARGV[3] task id  ARGV[4] lease (ms)  ARGV[5] principal
-- Returns {'ok', task_flat} | {'not_found'} | {'conflict', status} | {'forbidden'}.
settle()
local id = ARGV[3]
local task = fresh_task(id)
if not task.status then return {'not_found'} end
if task.status ~= 'in_progress' then return {'conflict', task.status} end
if task.claimed_by ~= ARGV[5] then return {'forbidden'} end
local expires = NOW + tonumber(ARGV[4])
redis.call('ZADD', key('leases'), expires, id)
redis.call('HSET', key('task', id), 'lease_expires_at', iso(expires), 'updated_at', NOW_ISO)
return {'ok', select(2, hgetall(key('task', id)))}
