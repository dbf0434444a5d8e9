-- read_events: one page of stored events, filtered inside Redis in bounded batches.
-- A.order ('asc' | 'desc')  A.start (exclusive id; absent = from the oldest/newest end)
-- A.stop (exclusive id; absent = none)  A.limit
-- A.event_type  A.task_id  A.source_agent (filters, absent = any)
-- A.scan_budget (entries examined at most)
-- Returns {outcome = 'ok', events = {{event_id, type, task_id, source_agent, data}, ...},
-- cursor}: each entry's fields, which events.py (envelope_of) reads back into an
-- envelope. Ascending pages always carry a cursor (the position to resume from, for
-- tailing; '0-0' = before everything); descending ones none at the end. At most
-- A.scan_budget entries are examined per call, in batches of 200, so a rare filter
-- never loads or blocks on the whole stream: a page may then hold fewer than A.limit
-- events but still carries the cursor to go on from.
-- With A.task_id the task's event index (the ids of its events in stream order: its
-- hash's field while short, else its task_events list; lib.lua) is read instead of the
-- stream: a binary search for the cursor, then one XRANGE per id, so one task's events
-- cost O(log n + page) whatever the stream holds. Ids the stream has trimmed away are
-- skipped.
-- Guarantees: the work per call is bounded and the cursor never skips an unexamined
-- entry. The caller guarantees the bounds are valid ids Redis can step past (not 0-0
-- as the upper bound, not the largest id as the lower one).
local asc = A.order == 'asc'
local stream = key('events')
local cursor, stop = A.start, A.stop
local events, examined = {}, 0

-- The service's own events store their source as '' (lib.lua, emit); older ones as
-- SERVICE_SOURCE.
local function matches(fields)
  local source = fields.source_agent
  if source == '' then source = SERVICE_SOURCE end
  return (not A.event_type or fields.type == A.event_type)
    and (not A.task_id or fields.task_id == A.task_id)
    and (not A.source_agent or source == A.source_agent)
end

local function found(id, fields)
  return {event_id = id, type = fields.type, task_id = fields.task_id,
    source_agent = fields.source_agent, data = fields.data}
end

local function page(next_cursor)
  return cjson.encode({outcome = 'ok', events = events, cursor = next_cursor})
end


local function from_index()
  -- The index is the field or the list, never both: a short one is decoded here and
  -- read as a Lua array, through the same two accessors.
  local index, held = key('task_events', A.task_id), nil
  local text = redis.call('HGET', key('task', A.task_id), EVENTS_FIELD)
  if text then held = field_ids(text) end
  local n = held and #held or redis.call('LLEN', index)
  local function id_at(at)
    if held then return held[at + 1] end
    return redis.call('LINDEX', index, at)
  end
  local function ids_between(first, last)
    if not held then return redis.call('LRANGE', index, first, last) end
    local ids = {}
    for at = first, last do ids[#ids + 1] = held[at + 1] end
    return ids
  end
  -- The first position past the cursor: ascending, the first id > cursor; descending
  -- (positions counted from the end), the first id < cursor.
  local function position_of(bound)
    if not bound then return 0 end
    local low, high = 0, n
    while low < high do
      local mid = math.floor((low + high) / 2)
      local at = asc and mid or (n - 1 - mid)
      local id = id_at(at)
      local past
      if asc then past = id_less(bound, id) else past = id_less(id, bound) end
      if past then high = mid else low = mid + 1 end
    end
    return low
  end
  local i = position_of(cursor)
  while i < n do
    local first, last = i, math.min(n - 1, i + 199)
    local ids
    if asc then
      ids = ids_between(first, last)
    else
      ids = ids_between(n - 1 - last, n - 1 - first)
      local reversed = {}
      for j = #ids, 1, -1 do reversed[#reversed + 1] = ids[j] end
      ids = reversed
    end
    for _, id in ipairs(ids) do
      local before_stop = true
      if stop then
        if asc then before_stop = id_less(id, stop) else before_stop = id_less(stop, id) end
      end
      if not before_stop then
        return page(asc and (cursor or '0-0') or nil)
      end
      local entry = redis.call('XRANGE', stream, id, id)[1]
      if entry then
        local fields = as_map(entry[2])
        if matches(fields) then events[#events + 1] = found(id, fields) end
      end
      cursor = id
      examined = examined + 1
      if #events == A.limit or examined >= A.scan_budget then return page(cursor) end
    end
    i = last + 1
  end
  return page(asc and (cursor or '0-0') or nil)
end

if A.task_id then return from_index() end

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
    if matches(fields) then events[#events + 1] = found(id, fields) end
    cursor = id
    examined = examined + 1
    if #events == A.limit or examined >= A.scan_budget then return page(cursor) end
  end
end
