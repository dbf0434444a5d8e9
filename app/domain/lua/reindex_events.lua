-- reindex_events: rebuild tasks' event indexes (each task's field or list, lib.lua) from
-- the stream, up to A.through, the stream's last id when the rebuild started; the service
-- indexes every later event itself, meanwhile. Two steps, each called in batches
-- (app/domain/reindex.py):
-- A.reset (task ids): empty each task's index of the ids up to A.through, keeping those
--   the service wrote since (in the form that holds them). Every stored task is reset
--   before the first A.entries.
-- A.entries ({{event_id, task_id}, ...}, stream order, none after A.through, each batch
--   after the one before): append each event to its task's index, before the ids the
--   service wrote since, so the index stays in stream order (read_events relies on it).
--   A task with no index left starts one as the service does: in its hash while short
--   (index_in_task(), so an index is the field or the list, never both).
-- Returns {outcome = 'ok', indexed} (the event ids written).
-- Guarantees: events about a task that is not stored are not indexed (a purged task's
-- index went with it); rebuilding again gives the same indexes.
local through = A.through

local function after_through(id)
  return id_less(through, id)
end

-- The ids at the end of a list that the service wrote after A.through: only a few (the
-- events of the last moments), so they are counted from the tail.
local function written_since(index)
  local n = 0
  while true do
    local id = redis.call('LINDEX', index, -(n + 1))
    if not id or not after_through(id) then return n end
    n = n + 1
  end
end

-- A field's ids split in two: up to A.through, and those the service wrote since.
local function split_field(text)
  local before, since = {}, {}
  for _, id in ipairs(field_ids(text)) do
    if after_through(id) then since[#since + 1] = id else before[#before + 1] = id end
  end
  return before, since
end

for _, id in ipairs(A.reset or {}) do
  local text = redis.call('HGET', key('task', id), EVENTS_FIELD)
  if text then
    local _, since = split_field(text)
    if #since == 0 then
      redis.call('HDEL', key('task', id), EVENTS_FIELD)
    else
      index_in_task(id, nil, since)
    end
  else
    local index = key('task_events', id)
    local keep = written_since(index)
    if keep == 0 then
      redis.call('DEL', index)
    else
      redis.call('LTRIM', index, -keep, -1)
    end
  end
end

-- The batch's ids per task, in stream order; tasks in order of their first event here.
local ids, tasks = {}, {}
for _, entry in ipairs(A.entries or {}) do
  local event_id, task_id = entry[1], entry[2]
  if not ids[task_id] then
    ids[task_id] = {}
    tasks[#tasks + 1] = task_id
  end
  ids[task_id][#ids[task_id] + 1] = event_id
end

local indexed = 0
for _, task_id in ipairs(tasks) do
  if redis.call('EXISTS', key('task', task_id)) == 1 then
    local text = redis.call('HGET', key('task', task_id), EVENTS_FIELD)
    local index = key('task_events', task_id)
    if text then
      -- The field again, as what it held up to A.through, the batch, then the rest.
      local all, since = split_field(text)
      for _, id in ipairs(ids[task_id]) do all[#all + 1] = id end
      for _, id in ipairs(since) do all[#all + 1] = id end
      index_in_task(task_id, nil, all)
    elseif redis.call('EXISTS', index) == 0 then
      index_in_task(task_id, nil, ids[task_id])
    else
      local since = written_since(index)
      local tail = {}
      if since > 0 then
        tail = redis.call('LRANGE', index, -since, -1)
        redis.call('LTRIM', index, 0, -(since + 1))
      end
      push_ids(index, ids[task_id])
      push_ids(index, tail)
    end
    indexed = indexed + #ids[task_id]
  end
end
return cjson.encode({outcome = 'ok', indexed = indexed})
