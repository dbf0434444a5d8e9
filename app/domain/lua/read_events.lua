-- read_events: one page of stored events, filtered inside Redis in bounded batches.
-- A.order ('asc' | 'desc')  A.start (exclusive id; absent = from the oldest/newest end)
-- A.stop (exclusive id; absent = none)  A.limit
-- A.event_type  A.task_id  A.source_agent (filters, absent = any)
-- A.scan_budget (entries examined at most)
-- Returns {outcome = 'ok', events = {{event_id, data}, ...}, cursor}. Ascending pages
-- always carry a cursor (the position to resume from, for tailing; '0-0' = before
-- everything); descending ones none at the end. At most A.scan_budget entries are
-- examined per call, in batches of 200, so a rare filter never loads or blocks on the
-- whole stream: a page may then hold fewer than A.limit events but still carries the
-- cursor to go on from.
-- Guarantees: the work per call is bounded and the cursor never skips an unexamined
-- entry. The caller guarantees the bounds are valid ids Redis can step past (not 0-0
-- as the upper bound, not the largest id as the lower one).
local asc = A.order == 'asc'
local stream = key('events')
local cursor, stop = A.start, A.stop
local events, examined = {}, 0

local function matches(fields)
  return (not A.event_type or fields.type == A.event_type)
    and (not A.task_id or fields.task_id == A.task_id)
    and (not A.source_agent or fields.source_agent == A.source_agent)
end

local function page(next_cursor)
  return cjson.encode({outcome = 'ok', events = events, cursor = next_cursor})
end

while true do
  local entries
  if asc then
    entries = redis.call('XRANGE', stream, cursor and ('(' .. cursor) or '-',
      stop and ('(' .. stop) or '+', 'COUNT', 200)
  else
    entries = redis.call('XREVRANGE', stream, cursor and ('(' .. cursor) or '+',
      stop and ('(' .. stop) or '-', 'COUNT', 200)
  end
  if #entries == 0 then return page(asc and (cursor or '0-0') or nil) end
  for _, entry in ipairs(entries) do
    local id, fields = entry[1], as_map(entry[2])
    if matches(fields) then events[#events + 1] = {event_id = id, data = fields.data} end
    cursor = id
    examined = examined + 1
    if #events == A.limit or examined >= A.scan_budget then return page(cursor) end
  end
end
