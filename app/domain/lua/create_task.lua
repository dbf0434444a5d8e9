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
-- A.run_at_ms        run no earlier than this (epoch ms); A.delay_ms: or this long from now
-- A.depends_on       task ids that must complete first (absent = none)
-- Returns {outcome = 'created' | 'replay' | 'resent', task} | {outcome = 'mismatch'} (the key was
-- used with another request body) | {outcome = 'memory_high', memory} (Redis is past
-- CFG.memory_high_watermark: nothing is written, so the memory left drains the queues)
-- | {outcome = 'invalid', field, message} (a run time not ahead or too far ahead by
-- Redis' clock, an unknown dependency).
-- 'resent': this very call ran before (redis-py sends a command again when the connection
-- drops, even after Redis ran it): the task's id is made per request (tasks.py), so a
-- stored one means the same request; the answer is the task as it is now, and nothing is
-- written again (a task claimed meanwhile is not queued a second time).
-- Guarantees: a repeated idempotency key never creates a second task; the task, its
-- queue entry, schedule or approval, its indexes and its events appear together or not
-- at all. Order: blocked on dependencies, then the gate, then the schedule, then queued;
-- a dependency already failed or cancelled cancels the task at once.
-- Nothing that fell due is applied here: nothing a create answers depends on it (a
-- dependency's status is the same either side of a lease expiry), and every read, claim
-- and decision applies it, so a create stays a few commands.
local fields = A.task
-- First: the idempotency record a re-sent call finds is the one its own first run wrote,
-- and answering it as a replay would tell a client that asked once that it asked twice.
if created_before() then
  return cjson.encode({outcome = 'resent', task = read_task(fields.task_id)})
end
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
local run_at_ms = A.run_at_ms
if A.delay_ms then
  run_at_ms = NOW + A.delay_ms
elseif run_at_ms and (run_at_ms <= NOW or run_at_ms > NOW + MAX_SCHEDULE_MS) then
  return cjson.encode({outcome = 'invalid', field = 'run_at',
    message = 'Must be in the future and at most 30 days ahead.'})
end
local waiting, missing, ended, ended_status = dependency_states(A.depends_on or {})
if #missing > 0 then
  return cjson.encode({outcome = 'invalid', field = 'depends_on',
    message = 'Unknown task ids: ' .. table.concat(missing, ', ')})
end
if A.sla_target_ms then
  local sla = cjson.decode(fields.sla)
  sla.deadline = iso(NOW + A.sla_target_ms)
  fields.sla = cjson.encode(sla)
end
local id = fields.task_id
local seq = redis.call('INCR', key('seq'))
-- The task as first stored, built here: its first move() writes it in one HSET (with no
-- updated_at: it is created_at until a later millisecond changes the task).
local task = {seq = tostring(seq), created_at = NOW_ISO}
for name, value in pairs(fields) do task[name] = value end
if run_at_ms then task.run_at_ms = tostring(run_at_ms); task.run_at = iso(run_at_ms) end
if A.depends_on then
  task.depends_on = cjson.encode(A.depends_on)
  task.deps_left = tostring(#waiting)
end
-- A gate waits in the task until release() opens it, once nothing else is in the way (a
-- task cancelled at once keeps it too, so a retry cannot skip the people it needed).
if A.approval and (#waiting > 0 or ended) then task.gate = cjson.encode(A.approval) end
local unsaved = {}
for name, value in pairs(task) do
  -- The key holds the id (read_task puts it back).
  if name ~= 'task_id' then unsaved[#unsaved + 1] = name; unsaved[#unsaved + 1] = value end
end
UNSAVED[id] = unsaved
-- Its event index starts now, in its hash (finish() need not look for one: the id is new).
INDEX_FIELD[id] = ''
file_route(id, task.type, task.assigned_to, seq)
emit('task.created', task, {task_id = id, type = task.type, priority = task.priority,
  assigned_to = task.assigned_to, created_by = task.created_by}, nil, CREATED_PAYLOAD)
if ended then
  task = move(id, task, 'cancelled', {'error', 'dependency ' .. ended .. ' ' .. ended_status})
elseif #waiting > 0 then
  for _, dep in ipairs(waiting) do redis.call('SADD', key('dependants', dep), id) end
  task = move(id, task, 'blocked')
else
  task = release(id, task, A.approval)
end
if idem_key then
  -- The snapshot stays the flat HGETALL list it has always been, so a record replays
  -- across a rolling deploy whichever release wrote it.
  local flat = {}
  for name, value in pairs(task) do flat[#flat + 1] = name; flat[#flat + 1] = value end
  redis.call('SET', idem_key, cjson.encode({fingerprint = A.fingerprint, snapshot = flat}),
    'EX', IDEMPOTENCY_TTL_SECONDS)
end
return cjson.encode({outcome = 'created', task = task})
