-- list_tasks: newest first, filtered, one page.
-- ARGV[3] cursor (exclusive seq, '' = newest)  ARGV[4] limit  ARGV[5] status filter
-- ARGV[6] type filter  ARGV[7] assigned_to filter  ARGV[8] scan budget (index entries)
-- Returns {next_cursor or '', task_flat, ...}. Work is bounded by the budget: a page may
-- come back short with a cursor when the filters match rarely (like SCAN).
-- Guarantees: every row is shown (and filtered) as of now, like GET /tasks/<id>: an
-- expired lease is requeued and an expired task left out, whatever settle() reached.
settle()
local limit = tonumber(ARGV[4])
local want_status, want_type, want_agent = ARGV[5], ARGV[6], ARGV[7]
local budget = tonumber(ARGV[8])
local upper = ARGV[3] == '' and '+inf' or ('(' .. ARGV[3])
local found, examined, last_seq = {}, 0, nil
local filtered = want_status ~= '' or want_type ~= '' or want_agent ~= ''
local batch = filtered and 500 or (limit + 1)

-- The fields a filter reads, after applying what fell due to this one task.
local function current_row(id)
  local k = key('task', id)
  local row = redis.call('HMGET', k, 'status', 'type', 'assigned_to', 'expires_ms')
  if row[1] == 'in_progress' then
    settle_task(id)
    row = redis.call('HMGET', k, 'status', 'type', 'assigned_to', 'expires_ms')
  end
  if row[4] and tonumber(row[4]) <= NOW then
    purge_task(id)
    return nil
  end
  return row[1] and row or nil
end

while true do
  local page = redis.call('ZREVRANGEBYSCORE', key('tasks'), upper, '-inf', 'WITHSCORES',
    'LIMIT', 0, batch)
  if #page == 0 then return {'', unpack(found)} end
  for i = 1, #page, 2 do
    local id, seq = page[i], page[i + 1]
    local row = current_row(id)
    local match = row and (want_status == '' or row[1] == want_status)
      and (want_type == '' or row[2] == want_type)
      and (want_agent == '' or row[3] == want_agent)
    if match then
      if #found == limit then return {last_seq, unpack(found)} end
      local _, flat = hgetall(key('task', id))
      found[#found + 1] = flat
    end
    last_seq = seq
    examined = examined + 1
    if examined >= budget then return {seq, unpack(found)} end
  end
  upper = '(' .. last_seq
end
