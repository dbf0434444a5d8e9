-- read_events: one page of stored events, filtered inside Redis in bounded batches.
-- ARGV[3] 'asc' | 'desc'  ARGV[4] exclusive start id ('' = from the oldest/newest end)
-- ARGV[5] limit  ARGV[6] type  ARGV[7] task_id  ARGV[8] source_agent ('' = any)
-- ARGV[9] scan budget  ARGV[10] exclusive end id ('' = none)
-- Returns {next_cursor or '', id, data, id, data, ...}. Ascending pages always return a
-- cursor (the position to resume from, for tailing; '0-0' = before everything);
-- descending ones '' at the end. At most ARGV[9] entries are examined per call, in
-- batches of 200, so a rare filter never loads or blocks on the whole stream: a page
-- may then hold fewer than `limit` events but still carries the cursor to go on from.
-- The caller guarantees the bounds are valid ids Redis can step past (not 0-0 as the
-- upper bound, not the largest id as the lower one).
local asc = ARGV[3] == 'asc'
local limit, budget = tonumber(ARGV[5]), tonumber(ARGV[9])
local want_type, want_task, want_source = ARGV[6], ARGV[7], ARGV[8]
local stream = key('events')
local cursor = ARGV[4]
local stop = ARGV[10]
local out, found, examined = {''}, 0, 0
while true do
  local page
  if asc then
    page = redis.call('XRANGE', stream, cursor == '' and '-' or ('(' .. cursor),
      stop == '' and '+' or ('(' .. stop), 'COUNT', 200)
  else
    page = redis.call('XREVRANGE', stream, cursor == '' and '+' or ('(' .. cursor),
      stop == '' and '-' or ('(' .. stop), 'COUNT', 200)
  end
  if #page == 0 then
    out[1] = asc and (cursor == '' and '0-0' or cursor) or ''
    return out
  end
  for _, entry in ipairs(page) do
    local id, f = entry[1], entry[2]
    local fields = {}
    for i = 1, #f, 2 do fields[f[i]] = f[i + 1] end
    if (want_type == '' or fields.type == want_type)
        and (want_task == '' or fields.task_id == want_task)
        and (want_source == '' or fields.source_agent == want_source) then
      out[#out + 1] = id
      out[#out + 1] = fields.data
      found = found + 1
    end
    cursor = id
    examined = examined + 1
    if found == limit or examined >= budget then
      out[1] = cursor
      return out
    end
  end
end
