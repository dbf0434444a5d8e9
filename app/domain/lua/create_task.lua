-- create_task: write a new task, route it and (when gated) open its approval, atomically.
-- A.task             the task's fields, an object of strings (task_id, type, priority, ...)
-- A.approval         the gate: {approval_id, reason, requested_by, requester_identities
--                    (every identity of the requester's delegation chain, normalised),
--                    requested_by_act (the chain; absent when none), required, eligible
--                    (specs), payload_sha256, payload_keys (top-level key -> hash), and
--                    from a policy rule: policy, timeout_ms?, escalate_to?, extend_ms?};
--                    absent when the task is not gated
-- A.idempotency_key  the idempotency record's key; absent for none
-- A.fingerprint      the request's fingerprint, kept with that record
-- A.sla_target_ms    set sla.deadline to the creation time + this; absent = deadline given
-- Returns {outcome = 'created' | 'replay', task} | {outcome = 'mismatch'} (the key was
-- used with another request body) | {outcome = 'memory_high', memory} (Redis is past
-- CFG.memory_high_watermark: nothing is written, so the memory left drains the queues).
-- Guarantees: a repeated idempotency key never creates a second task; the task, its
-- queue entry or approval, its counters and its events appear together or not at all.
settle()
local fields = A.task
local idem_key = A.idempotency_key
if idem_key then
  local seen = redis.call('GET', idem_key)
  if seen then
    local record = cjson.decode(seen)
    if record.fingerprint ~= A.fingerprint then
      return cjson.encode({outcome = 'mismatch'})
    end
    return cjson.encode({outcome = 'replay', task = as_map(record.snapshot)})
  end
end
local mem = memory()
if memory_high(mem) then return cjson.encode({outcome = 'memory_high', memory = mem}) end
if A.sla_target_ms then
  local sla = cjson.decode(fields.sla)
  sla.deadline = iso(NOW + A.sla_target_ms)
  fields.sla = cjson.encode(sla)
end
local id = fields.task_id
local k = key('task', id)
local seq = redis.call('INCR', key('seq'))
local out = {'seq', tostring(seq), 'created_at', NOW_ISO, 'updated_at', NOW_ISO,
  'retry_count', '0'}
for name, value in pairs(fields) do out[#out + 1] = name; out[#out + 1] = value end
local gate = A.approval
if gate then out[#out + 1] = 'approval_id'; out[#out + 1] = gate.approval_id end
redis.call('HSET', k, unpack(out))
redis.call('ZADD', key('tasks'), seq, id)
local task = hgetall(k)
emit('task.created', task, {task_id = id, type = task.type, priority = task.priority,
  assigned_to = task.assigned_to, created_by = task.created_by})
if gate then
  task = move(id, task, 'awaiting_approval')
  local aid = gate.approval_id
  local expires = NOW + (gate.timeout_ms or CFG.approval_timeout * 1000)
  local record = {'approval_id', aid, 'task_id', id,
    'task_type', task.type, 'priority', task.priority, 'reason', gate.reason,
    'status', 'pending', 'requested_by', gate.requested_by, 'requested_at', NOW_ISO,
    'expires_at', iso(expires), 'required_approvals', tostring(gate.required),
    'eligible', cjson.encode(gate.eligible), 'approvals', '[]', 'payload_version', '1',
    'payload_sha256', gate.payload_sha256, 'payload_keys', cjson.encode(gate.payload_keys),
    'escalated', '0', 'requester_identities', cjson.encode(gate.requester_identities)}
  if gate.policy then
    for _, v in ipairs({'policy', gate.policy, 'escalate_to', cjson.encode(gate.escalate_to
      or {}), 'extend_ms', tostring(gate.extend_ms or 0)}) do record[#record + 1] = v end
  end
  if gate.requested_by_act then
    record[#record + 1] = 'requested_by_act'
    record[#record + 1] = cjson.encode(gate.requested_by_act)
  end
  redis.call('HSET', key('approval', aid), unpack(record))
  redis.call('ZADD', key('approvals_pending'), seq, aid)
  redis.call('ZADD', key('approvals_deadlines'), expires, aid)
  emit('approval.requested', task, {approval_id = aid, task_id = id, reason = gate.reason,
    requested_by = gate.requested_by, expires_at = iso(expires)})
else
  task = move(id, task, 'assigned')
end
local stored, flat = hgetall(k)
if idem_key then
  -- The snapshot stays the flat HGETALL list it has always been, so a record replays
  -- across a rolling deploy whichever release wrote it.
  redis.call('SET', idem_key, cjson.encode({fingerprint = A.fingerprint, snapshot = flat}),
    'EX', IDEMPOTENCY_TTL_SECONDS)
end
return cjson.encode({outcome = 'created', task = stored})
