-- list_tasks: newest first, filtered, one page.
-- A.after_seq (exclusive creation sequence, a string: it may exceed a double's precision;
-- absent = newest)  A.limit  A.status  A.task_type  A.assigned_to (filters, absent = any)
-- A.scan_budget (index entries examined at most)
-- Returns {outcome = 'ok', tasks, next_seq (absent at the end)}. Work is bounded by the
-- budget: a page may come back short with a next_seq when the filters match rarely
-- (like SCAN).
-- Guarantees: every row is shown (and filtered) as of now, like GET /tasks/<id>: an
-- expired lease is requeued, a due schedule queued and an expired task left out,
-- whatever settle() reached.
settle()
local limit, budget = A.limit, A.scan_budget
local want_status, want_type, want_agent = A.status, A.task_type, A.assigned_to
local upper = A.after_seq and ('(' .. A.after_seq) or '+inf'
local found, examined, last_seq = {}, 0, nil
local filtered = want_status or want_type or want_agent
local batch = filtered and 500 or (limit + 1)

local function page(next_seq)
  return cjson.encode({outcome = 'ok', tasks = found, next_seq = next_seq})
end

-- The fields a filter reads, after applying what fell due to this one task.
local function current_row(id)
  local k = key('task', id)
  local row = redis.call('HMGET', k, 'status', 'type', 'assigned_to', 'expires_ms')
  if row[1] == 'in_progress' or row[1] == 'scheduled' then
    fresh_task(id)
    row = redis.call('HMGET', k, 'status', 'type', 'assigned_to', 'expires_ms')
  end
  if row[4] and tonumber(row[4]) <= NOW then
    purge_task(id)
    return nil
  end
  return row[1] and row or nil
end

while true do
  local entries = redis.call('ZREVRANGEBYSCORE', key('tasks'), upper, '-inf', 'WITHSCORES',
    'LIMIT', 0, batch)
  if #entries == 0 then return page(nil) end
  for i = 1, #entries, 2 do
    local id, seq = entries[i], entries[i + 1]
    local row = current_row(id)
    local match = row and (not want_status or row[1] == want_status)
      and (not want_type or row[2] == want_type)
      and (not want_agent or row[3] == want_agent)
    if match then
      if #found == limit then return page(last_seq) end
      found[#found + 1] = hgetall(key('task', id))
    end
    last_seq = seq
    examined = examined + 1
    if examined >= budget then return page(seq) end
  end
  upper = '(' .. last_seq
end
