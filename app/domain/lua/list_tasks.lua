-- list_tasks: newest first, filtered, one page, read through the indexes.
-- A.after_seq (exclusive creation sequence, a string: it may exceed a double's precision;
-- absent = newest)  A.limit  A.status  A.task_type  A.assigned_to (filters, absent = any)
-- A.scan_budget (index entries examined at most)
-- Returns {outcome = 'ok', tasks, next_seq (absent at the end)}.
-- How: one filter reads its index (by_status) or indexes (by_route: a type's or an
-- agent's few routes, merged) and every entry matches, so a page costs O(log N + page)
-- whatever N; several filters read the smallest and check the others on each row
-- (bounded by the budget: such a page may come back short, with a next_seq, like SCAN);
-- no filter merges the status indexes.
-- Guarantees: every row is shown (and filtered) as of now, like GET /tasks/<id>: an
-- expired lease is requeued, a due schedule queued and an expired task left out,
-- whatever settle() reached.
settle()
local limit, budget = A.limit, A.scan_budget
local filters = {status = A.status, type = A.task_type, assigned_to = A.assigned_to}
local upper = A.after_seq and ('(' .. A.after_seq) or '+inf'
local found = {}

local function page(next_seq)
  return cjson.encode({outcome = 'ok', tasks = found, next_seq = next_seq})
end

-- The task as of now, or nil when it is gone or no longer matches every filter.
local function current(id)
  local task = fresh_task(id)
  for field, wanted in pairs(filters) do
    if task[field] ~= wanted then return nil end
  end
  return task.status and task or nil
end

-- The indexes to read. A status is one index; a type or an agent is the route indexes
-- (type, agent) it has, as `routes` names them (lib.lua, file_route): a type's agents,
-- an agent's types (few: the routing table's).
-- Several filters read the smallest; none merges the status indexes.
local function routes(task_type, agent)
  if task_type and agent then return {key('by_route', task_type, agent)} end
  local found = {}
  for _, route in ipairs(redis.call('SMEMBERS', key('routes'))) do
    local route_type, route_agent = string.match(route, '^([^:]+):(.+)$')
    if route_type == task_type or route_agent == agent then
      found[#found + 1] = key('by_route', route_type, route_agent)
    end
  end
  return found
end

local function size(group)
  local n = 0
  for _, index in ipairs(group) do n = n + redis.call('ZCARD', index) end
  return n
end

local indexes, choices = {}, {}
if A.status then choices[#choices + 1] = {key('by_status', A.status)} end
if A.task_type or A.assigned_to then
  choices[#choices + 1] = routes(A.task_type, A.assigned_to)
end
if #choices == 1 then
  indexes = choices[1]
elseif #choices > 1 then
  indexes = size(choices[1]) <= size(choices[2]) and choices[1] or choices[2]
else
  for _, status in ipairs(STATUSES) do indexes[#indexes + 1] = key('by_status', status) end
end

-- The next `count` entries below `upper` across the indexes, newest first: {id, seq}.
-- Merged, only the first `count` are certain to come before every entry not yet read.
local function next_entries(count)
  local merged = {}
  for _, index in ipairs(indexes) do
    local flat = redis.call('ZREVRANGEBYSCORE', index, upper, '-inf', 'WITHSCORES',
      'LIMIT', 0, count)
    for i = 1, #flat, 2 do
      merged[#merged + 1] = {flat[i], flat[i + 1], tonumber(flat[i + 1])}
    end
  end
  if #indexes > 1 then
    table.sort(merged, function(a, b) return a[3] > b[3] end)
    for i = #merged, count + 1, -1 do merged[i] = nil end
  end
  return merged
end

local examined, last_seq = 0, nil
while true do
  local entries = next_entries(limit + 1 - #found)
  if #entries == 0 then return page(nil) end
  for _, entry in ipairs(entries) do
    local id, seq = entry[1], entry[2]
    local task = current(id)
    if task then
      if #found == limit then return page(last_seq) end
      found[#found + 1] = task
    end
    last_seq = seq
    examined = examined + 1
    if examined >= budget then return page(seq) end
  end
  upper = '(' .. last_seq
end
