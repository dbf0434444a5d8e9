-- decide_approval: one principal's approval (maybe with an edited payload) or rejection;
-- once approved, the task goes on (scheduled or queued) through release().
-- A.approval_id  A.decision ('approved' | 'rejected')  A.principal (the decider)
-- A.role (the decider's role)  A.groups (the groups listing the decider)
-- A.decider_identities (the decider and its token's `act` chain, normalised)
-- A.act (the decider's delegation chain, recorded as decided_by_act; absent = none)
-- A.reason (for a rejection; absent = none given)  A.comment (absent = none)
-- A.payload (an edit: the new payload as JSON text)  A.payload_sha256, A.payload_keys
-- (its canonical hash and per-key hashes)  A.expected_sha256 (approve only what the
-- decider saw: a different current payload is a conflict)
-- Returns {outcome = 'ok', approval, task (absent when the task is gone)}
--       | {outcome = 'not_found'} | {outcome = 'conflict', status, approval, why?}
--       | {outcome = 'forbidden', why = 'four_eyes' | 'ineligible'} | {outcome = 'reason'}
-- Guarantees: decisions run one at a time; an approval is counted once per person (no
-- identity behind it, `act` chain included, counted before for this payload version)
-- and the task is released exactly once, when `required_approvals` distinct eligible
-- principals approved the current payload version; one eligible rejection closes it.
-- Due timeouts (and escalations) are applied first. The approval, its history entry,
-- the task, its queue entry and the events change together.
settle()
local aid, decision, principal = A.approval_id, A.decision, A.principal
settle_approval(aid)
local ak = key('approval', aid)
local approval = hgetall(ak)
if not approval.status then return cjson.encode({outcome = 'not_found'}) end
local function conflict(why)
  return cjson.encode({outcome = 'conflict', status = approval.status, approval = approval,
    why = why})
end
if approval.status ~= 'pending' then return conflict() end

-- role:<role> (that role or higher), group:<name>, or the principal's own id.
local function eligible(specs)
  local groups = {}
  for _, name in ipairs(A.groups or {}) do groups[name] = true end
  for _, spec in ipairs(specs) do
    local kind, name = string.match(spec, '^(%a+):(.*)$')
    if (kind == 'role' and ROLE_RANK[name] and ROLE_RANK[A.role] >= ROLE_RANK[name])
      or (kind == 'group' and groups[name]) or spec == principal then
      return true
    end
  end
  return false
end

-- The decider's delegation chain is kept with the decision it closes (decided_by_act).
local function with_act(fields)
  if A.act then
    fields[#fields + 1] = 'decided_by_act'
    fields[#fields + 1] = cjson.encode(A.act)
  end
  return fields
end

local requester = is_requester(approval, A.decider_identities)
if decision == 'approved' and requester then
  return cjson.encode({outcome = 'forbidden', why = 'four_eyes'})
end
-- The requester may always withdraw (reject) its own request.
if not requester and approval.eligible and not eligible(cjson.decode(approval.eligible)) then
  return cjson.encode({outcome = 'forbidden', why = 'ineligible'})
end
local task = read_task(approval.task_id)

if decision == 'rejected' then
  if approval.policy and not A.reason then return cjson.encode({outcome = 'reason'}) end
  local reason = A.reason or 'no reason given'
  local fields = {'rejection_reason', reason}
  if A.comment then fields[#fields + 1] = 'comment'; fields[#fields + 1] = A.comment end
  close_approval(aid, decision, principal, with_act(fields))
  if task.status == 'awaiting_approval' then
    move(approval.task_id, task, 'cancelled', {'error', 'approval rejected: ' .. reason})
  end
else
  if A.expected_sha256 and A.expected_sha256 ~= approval.payload_sha256 then
    return conflict('stale')
  end
  local approvals = cjson.decode(approval.approvals or '[]')
  local counted = approver_identities(approval, approvals)
  local edit = A.payload and A.payload_sha256 ~= approval.payload_sha256
  if not edit then
    -- The same person again, by whichever credential (lib.lua, approver_identities).
    if shares_identity(counted, A.decider_identities) then return conflict('repeat') end
  else
    -- An edit restarts the count on the new payload; the editor's approval is its first.
    local old, new, changed = cjson.decode(approval.payload_keys or '{}'), A.payload_keys, {}
    for name, digest in pairs(new) do
      if old[name] ~= digest then changed[#changed + 1] = name end
    end
    for name in pairs(old) do
      if new[name] == nil then changed[#changed + 1] = name end
    end
    table.sort(changed)
    local version = tonumber(approval.payload_version or '1') + 1
    approvals, counted = {}, {}
    redis.call('HSET', ak, 'payload_version', tostring(version), 'payload_sha256',
      A.payload_sha256, 'payload_keys', cjson.encode(new))
    -- A task gone from Redis (deleted or evicted) is not written back as a bare payload.
    if task.status then
      redis.call('HSET', key('task', approval.task_id), 'payload', A.payload,
        unpack(touched(approval.task_id, task)))
    end
    emit('approval.edited', task, {approval_id = aid, task_id = approval.task_id,
      edited_by = principal, payload_version = version, changed_keys = changed,
      old_payload_sha256 = approval.payload_sha256, new_payload_sha256 = A.payload_sha256})
  end
  -- Each approval keeps who acted behind it (the closing one's is also decided_by_act).
  approvals[#approvals + 1] = {by = principal, at = NOW_ISO, comment = A.comment or cjson.null,
    act = A.act or cjson.null}
  for _, id in ipairs(A.decider_identities) do counted[#counted + 1] = id end
  local listed = cjson.encode(approvals)
  if #approvals < tonumber(approval.required_approvals or '1') then
    redis.call('HSET', ak, 'approvals', listed, 'approver_identities', cjson.encode(counted))
  else
    local fields = {'approvals', listed, 'approver_identities', cjson.encode(counted)}
    if A.comment then fields[#fields + 1] = 'comment'; fields[#fields + 1] = A.comment end
    approval = close_approval(aid, decision, principal, with_act(fields))
    if task.status == 'awaiting_approval' then
      local by = {}
      for i, given in ipairs(approvals) do by[i] = given.by end
      local receipt = cjson.encode({approval_id = aid, approved_by = by,
        payload_sha256 = approval.payload_sha256, decided_at = NOW_ISO})
      -- The receipt first, then on: scheduled while its run time is ahead, else queued.
      redis.call('HSET', key('task', approval.task_id), 'approval', receipt)
      release(approval.task_id, (read_task(approval.task_id)))
    end
  end
end
task = read_task(approval.task_id)
return cjson.encode({outcome = 'ok', approval = hgetall(ak), task = task.status and task or nil})
