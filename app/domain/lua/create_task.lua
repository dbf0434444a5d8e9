-- create_task: write a new task, route it and (when gated) open its approval, atomically.
-- ARGV[3] task fields as a JSON object of strings (task_id, type, priority, ...)
-- ARGV[4] approval JSON {approval_id, reason, requested_by} or '' when not gated
-- ARGV[5] idempotency key ('' for none)   ARGV[6] request fingerprint
-- ARGV[7] SLA target (ms) to set sla.deadline from the creation time, '' = deadline given
-- Returns {'created', task_flat} | {'replay', snapshot_json} | {'mismatch'}.
-- Guarantees: a repeated idempotency key never creates a second task; the task, its
-- queue entry or approval, its counters and its events appear together or not at all.
settle()
local fields = cjson.decode(ARGV[3])
local idem_key = ARGV[5]
if idem_key ~= '' then
  local seen = redis.call('GET', idem_key)
  if seen then
    local record = cjson.decode(seen)
    if record.fingerprint ~= ARGV[6] then return {'mismatch'} end
    return {'replay', record.snapshot}
  end
end
if ARGV[7] ~= '' then
  local sla = cjson.decode(fields.sla)
  sla.deadline = iso(NOW + tonumber(ARGV[7]))
  fields.sla = cjson.encode(sla)
end
local id = fields.task_id
local k = key('task', id)
local seq = redis.call('INCR', key('seq'))
local out = {'seq', tostring(seq), 'created_at', NOW_ISO, 'updated_at', NOW_ISO,
  'retry_count', '0'}
for name, value in pairs(fields) do out[#out + 1] = name; out[#out + 1] = value end
local gate = ARGV[4] ~= '' and cjson.decode(ARGV[4]) or nil
if gate then out[#out + 1] = 'approval_id'; out[#out + 1] = gate.approval_id end
redis.call('HSET', k, unpack(out))
redis.call('ZADD', key('tasks'), seq, id)
local task = hgetall(k)
emit('task.created', task, {task_id = id, type = task.type, priority = task.priority,
  assigned_to = task.assigned_to, created_by = task.created_by})
if gate then
  task = move(id, task, 'awaiting_approval')
  local aid = gate.approval_id
  local expires = NOW + CFG.approval_timeout * 1000
  redis.call('HSET', key('approval', aid), 'approval_id', aid, 'task_id', id,
    'task_type', task.type, 'priority', task.priority, 'reason', gate.reason,
    'status', 'pending', 'requested_by', gate.requested_by, 'requested_at', NOW_ISO,
    'expires_at', iso(expires))
  redis.call('ZADD', key('approvals_pending'), seq, aid)
  redis.call('ZADD', key('approvals_deadlines'), expires, aid)
  emit('approval.requested', task, {approval_id = aid, task_id = id, reason = gate.reason,
    requested_by = gate.requested_by, expires_at = iso(expires)})
else
  task = move(id, task, 'assigned')
end
local _, flat = hgetall(k)
if idem_key ~= '' then
  redis.call('SET', idem_key, cjson.encode({fingerprint = ARGV[6], snapshot = flat}),
    'EX', IDEMPOTENCY_TTL_SECONDS)
end
return {'created', flat}
