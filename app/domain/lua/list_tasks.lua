-- list_tasks: newest first, filtered, one page.
-- ARGV[3] cursor (exclusive seq, '' = newest)  ARGV[4] limit  ARGV[5] status filter
-- ARGV[6] type filter  ARGV[7] assigned_to filter  ARGV[8] scan budget (index entries)
-- Returns {next_cursor or '', task_flat, ...}. Work is bounded by the budget: a page may
-- come back short with a cursor when the filters match rarely (like SCAN).
settle()
local limit = tonumber(ARGV[4])
local want_status, want_type, want_agent = ARGV[5], ARGV[6], ARGV[7]
local budget = tonumber(ARGV[8])
local filtered = want_status ~= '' or want_type ~= '' or want_agent ~= ''
local upper = ARGV[3] == '' and '+inf' or ('(' .. ARGV[3])
local found, examined, last_seq = {}, 0, nil
local batch = filtered and 500 or (limit + 1)
while true do
  local page = redis.call('ZREVRANGEBYSCORE', key('tasks'), upper, '-inf', 'WITHSCORES',
    'LIMIT', 0, batch)
  if #page == 0 then return {'', unpack(found)} end
  for i = 1, #page, 2 do
    local id, seq = page[i], page[i + 1]
    local k = key('task', id)
    local match = true
    if filtered then
      local row = redis.call('HMGET', k, 'status', 'type', 'assigned_to')
      match = row[1] and (want_status == '' or row[1] == want_status)
        and (want_type == '' or row[2] == want_type)
        and (want_agent == '' or row[3] == want_agent)
    end
    if match then
      if #found == limit then return {last_seq, unpack(found)} end
      local _, flat = hgetall(k)
      if #flat > 0 then found[#found + 1] = flat end
    end
    last_seq = seq
    examined = examined + 1
    if examined >= budget then return {seq, unpack(found)} end
  end
  upper = '(' .. last_seq
end
