-- Shared prelude of every script (lua_source.py prepends it, after the constants it
-- generates from model.py and keys.py: LAYOUT, TERMINAL, RETRYABLE, ALLOWED, PRIORITY_RANK,
-- EVENT_PRIORITY, DEFAULT_EVENT_PRIORITY, DEFAULT_MAX_RETRIES, SERVICE_SOURCE,
-- CREATED_PAYLOAD, MAX_SCHEDULE_MS, IDEMPOTENCY_TTL_SECONDS, ROLE_RANK, DELIVERY_GROUP,
-- EVENTS_FIELD, EVENTS_FIELD_MAX, and the deployment's settings as CFG: task_ttl,
-- approval_timeout, history_ttl, max_history, maxlen, lease_ms (the default lease),
-- memory_high_watermark (percent), webhook_max_age_ms, agent_caps (agent -> leases).
-- KEYS[1] = `{<prefix>}`, the hash tag every key carries: no script reads it, it routes
-- the call to the node that holds the deployment's one slot.
-- ARGV[1] = key prefix; ARGV[2] = the call's named arguments as one JSON object, read as
-- A.<name>. An argument the caller left out is nil (Python never sends null, which cjson
-- would decode to a truthy cjson.null).
-- Every script answers cjson.encode({outcome = ..., ...}); its body runs as main(), and
-- finish() (below) does the writes deferred to the end of the call.
-- Keys are built here from the prefix because a task's keys (its queue, its approval)
-- are only known inside the script; the hash tag keeps them all in one cluster slot.
-- Time is Redis' own clock (TIME), so every worker and instance agrees on leases
-- and deadlines.
local P = ARGV[1]
local A = cjson.decode(ARGV[2])
local _time = redis.call('TIME')
local NOW = tonumber(_time[1]) * 1000 + math.floor(tonumber(_time[2]) / 1000)
local SETTLE_BUDGET = 100

-- A key of one of the kinds in keys.py's LAYOUT, its placeholders filled in order.
local function key(kind, ...)
  local pattern = LAYOUT[kind]
  if not pattern then error('unknown key kind: ' .. tostring(kind)) end
  return '{' .. P .. '}:' .. string.format(pattern, ...)
end

-- Epoch milliseconds to ISO 8601 UTC (days-from-civil inverse, H. Hinnant).
local function iso(ms)
  local secs = math.floor(ms / 1000)
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,
    math.floor(rem / 3600), math.floor((rem % 3600) / 60), rem % 60, ms % 1000)
end
local NOW_ISO = iso(NOW)

-- {k1, v1, k2, v2, ...} -> {k1 = v1, ...}
local function as_map(flat)
  local map = {}
  for i = 1, #flat, 2 do map[flat[i]] = flat[i + 1] end
  return map
end

local function hgetall(k)
  local flat = redis.call('HGETALL', k)
  return as_map(flat), flat
end

-- What this call knows of tasks' event index fields (see "A task's event index" below):
-- the field's text, false when the hash has none (its list, if any, is the index), ''
-- for a task this call created (no index at all yet); nil: not read.
local INDEX_FIELD = {}

-- A task as stored, with its id: the key names the task, so its hash does not hold the
-- id again (36 bytes a task; hashes written before that still do, with the same value).
-- Its event index field is not one of its fields: it is left out (and remembered for
-- finish()). {} when there is no such task.
local function read_task(id)
  local task = hgetall(key('task', id))
  if next(task) then
    task.task_id = task.task_id or id
    INDEX_FIELD[id] = task[EVENTS_FIELD] or false
    task[EVENTS_FIELD] = nil
  end
  return task
end

-- Events: one stream entry plus two pub/sub messages, so the stored log and the
-- live fan-out never disagree. The entry stores each fact once: `type`, `task_id` and
-- `source_agent` are its fields, its id's milliseconds are its timestamp (the id is
-- made from NOW), and `data` holds the rest of the envelope as JSON, less what the
-- reader restores (events.py, envelope_of). `live` is that rest restored, as JSON text
-- too: the live message carries the whole envelope. Each event about a task also goes
-- in that task's event index (task_events): the ids are collected here and written by
-- finish(), one write per task per call (see "A task's event index" below).
local EVENT_IDS, EVENT_TASKS = {}, {}
-- Tasks this call knows are stored (their index goes with them when they are purged).
local STORED = {}
local function emit_raw(event_type, task_id, source_agent, data, live)
  local stream, fields = key('events'), {'type', event_type, 'task_id', task_id,
    'source_agent', source_agent, 'data', data}
  local id = redis.pcall('XADD', stream, 'MAXLEN', '~', CFG.maxlen, NOW .. '-*',
    unpack(fields))
  if type(id) == 'table' then
    -- The stream's last id is ahead of NOW (Redis' clock stepped back): Redis picks the
    -- id, and the entry keeps its own timestamp.
    fields[8] = string.sub(data, 1, -2) .. ',"timestamp":"' .. NOW_ISO .. '"}'
    id = redis.call('XADD', stream, 'MAXLEN', '~', CFG.maxlen, '*', unpack(fields))
  end
  local message = '{"event_id":"' .. id .. '","event_type":' .. cjson.encode(event_type)
    .. ',"source_agent":' .. cjson.encode(source_agent ~= '' and source_agent or SERVICE_SOURCE)
    .. ',"task_id":'
    .. (task_id ~= '' and cjson.encode(task_id) or 'null') .. ',"timestamp":"' .. NOW_ISO
    .. '",' .. string.sub(live, 2)
  redis.call('PUBLISH', key('event_channel', event_type), message)
  redis.call('PUBLISH', key('event_channel', '*'), message)
  if task_id ~= '' then
    local ids = EVENT_IDS[task_id]
    if not ids then
      ids = {}
      EVENT_IDS[task_id] = ids
      EVENT_TASKS[#EVENT_TASKS + 1] = task_id
    end
    ids[#ids + 1] = id
  end
  return id
end

-- A task's event index ---------------------------------------------------------
-- The stream ids of a task's events, in stream order, in one of two forms, never both:
-- - while they are few, the field EVENTS_FIELD of a stored task's hash (keys.py; no task
--   field has its name, and read_task() leaves it out): a list key of its own costs
--   about 200 B more than a short field, and most tasks have a handful of events;
-- - else the list task_events:<id>: a task whose field would grow past EVENTS_FIELD_MAX,
--   a task stored before the field existed, or a task id that is not stored.
-- The field holds the first id in full, then each next one as "<its ms minus the first
-- id's ms>-<its seq>", joined by ',' (`1796142684322-0,0-1,249-0`). It never grows past
-- EVENTS_FIELD_MAX bytes (Redis' hash-max-listpack-value: a longer value turns the whole
-- hash into a hashtable, about 2.5 times its memory, for good); what would pass it moves,
-- with every id the field held, to the list, and the field goes. Seqs stay text;
-- milliseconds of up to 15 digits are exact in a double (a longer one goes to the list).

-- Whether stream id a comes before b. Each is two unsigned integers too large for a
-- double, compared by length, then text (Redis writes them without leading zeros).
local function number_less(x, y)
  if #x ~= #y then return #x < #y end
  return x < y
end
local function id_less(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  if a_ms ~= b_ms then return number_less(a_ms, b_ms) end
  return number_less(a_seq, b_seq)
end

-- The ids a field's text holds, in order.
local function field_ids(text)
  local ids, base = {}, nil
  for ms, seq in string.gmatch(text, '(%d+)-(%d+)') do
    if base then
      ids[#ids + 1] = string.format('%.0f', base + tonumber(ms)) .. '-' .. seq
    else
      base = tonumber(ms)
      ids[1] = ms .. '-' .. seq
    end
  end
  return ids
end

-- RPUSH in chunks: unpack() of a long list would overflow Lua's stack.
local function push_ids(index, ids)
  for first = 1, #ids, 1000 do
    redis.call('RPUSH', index, unpack(ids, first, math.min(#ids, first + 999)))
  end
end

-- Sets the index of a stored task that has no list to the ids of `text` (its field's
-- text; nil, false or '' for none) followed by `ids` (stream order, after those): the
-- field while it stays within EVENTS_FIELD_MAX bytes, else the list, and no field.
local function index_in_task(task_id, text, ids)
  local parts, base = {}, nil
  if text and text ~= '' then
    parts[1], base = text, tonumber(string.match(text, '^%d+'))
  end
  for _, id in ipairs(ids) do
    local ms, seq = string.match(id, '^(%d+)-(%d+)$')
    if #ms > 15 then
      parts = nil
      break
    end
    if base then
      parts[#parts + 1] = string.format('%.0f', tonumber(ms) - base) .. '-' .. seq
    else
      parts[1], base = id, tonumber(ms)
    end
  end
  local k = key('task', task_id)
  local joined = parts and table.concat(parts, ',')
  if joined and #joined <= EVENTS_FIELD_MAX then
    redis.call('HSET', k, EVENTS_FIELD, joined)
    return
  end
  local all = (text and text ~= '') and field_ids(text) or {}
  for _, id in ipairs(ids) do all[#all + 1] = id end
  push_ids(key('task_events', task_id), all)
  redis.call('HDEL', k, EVENTS_FIELD)
end

-- The end of every call: write the event ids collected above, one write per task (the
-- field's HSET, or an RPUSH to the list; the field is read first unless read_task() or
-- create_task already know it). An index started for a task id that is not stored (a
-- client's event about an unknown or purged task) is a list, and expires like a
-- finished task would, so it cannot outlive what it indexes for ever.
local function finish(reply)
  for _, task_id in ipairs(EVENT_TASKS) do
    local ids, text = EVENT_IDS[task_id], INDEX_FIELD[task_id]
    if text == nil then text = redis.call('HGET', key('task', task_id), EVENTS_FIELD) end
    local index = key('task_events', task_id)
    if text then
      index_in_task(task_id, text, ids)
    elseif redis.call('RPUSHX', index, unpack(ids)) == 0 then
      -- No index yet (or it was purged): a stored task's starts in its hash.
      if STORED[task_id] or redis.call('EXISTS', key('task', task_id)) == 1 then
        index_in_task(task_id, nil, ids)
      else
        redis.call('RPUSH', index, unpack(ids))
        redis.call('PEXPIRE', index, CFG.task_ttl * 1000)
      end
    end
  end
  return reply
end

-- The rate limiter's sliding-window counter (limits' algorithm; app/rate_storage.py and
-- app/rate_rider.py send it). r = {record, limit, expiry_ms, cost, now (the caller's
-- ms), failures (optional: the address' failed-authentication counter), failure_limit}.
-- The record is "<window>:<previous window's count>:<this window's count>", one key per
-- limit and principal; windows are aligned to multiples of the expiry on the callers'
-- clocks (a boundary only decides which count a hit joins). Returns {taken 0/1,
-- previous count, its ttl, current count, its ttl} (ms) after the hit, or
-- {0, 0, 0, -1, 0} when the address is over its failure limit. O(1) in time and memory
-- whatever the limit: one MGET, and one SET when taken. A full Redis cannot record the
-- slot: the SET is best-effort, and the request goes on uncounted rather than refused
-- (refusing would also stop the reads and claims that drain it).
local function rate_window(r)
  local values = redis.call('MGET', r.record, r.failures or r.record)
  if r.failures and tonumber(values[2] or '0') >= r.failure_limit then
    return {0, 0, 0, -1, 0}
  end
  local expiry, cost, limit = r.expiry_ms, r.cost, r.limit
  local window = math.floor(r.now / expiry)
  local elapsed = r.now - window * expiry
  local previous, current = 0, 0
  if values[1] then
    local w, p, c = string.match(values[1], '^(%d+):(%d+):(%d+)$')
    if tonumber(w) == window then
      previous, current = tonumber(p), tonumber(c)
    elseif tonumber(w) == window - 1 then
      previous = tonumber(c)
    end
  end
  local previous_ttl, current_ttl = expiry - elapsed, 2 * expiry - elapsed
  local taken = 0
  if cost <= limit and math.floor(previous * previous_ttl / expiry) + current + cost <= limit then
    current, taken = current + cost, 1
    redis.pcall('SET', r.record, string.format('%d:%d:%d', window, previous, current),
      'PX', current_ttl)
  end
  return {taken, previous, previous_ttl, current, current_ttl}
end

-- The first reply of a write in SENT_ONCE (once, below) when this call ran before, else
-- false; read once, by ride() or once(), whichever asks first.
local SENT_BEFORE = nil
local function sent_before()
  if SENT_BEFORE == nil then SENT_BEFORE = redis.call('GET', key('call', A.call)) end
  return SENT_BEFORE
end

-- Whether this call is a create that ran before: the task it stores is there already
-- (its id is made per request: create_task.lua, 'resent'). Read once, by ride() or
-- create_task, whichever asks first; false for every other script (no A.task).
local CREATED_BEFORE = nil
local function created_before()
  if CREATED_BEFORE == nil then
    CREATED_BEFORE = A.task ~= nil
      and redis.call('EXISTS', key('task', A.task.task_id)) == 1
  end
  return CREATED_BEFORE
end

-- Every call runs as finish(ride(main)) (lua_source.py). A.rate, when given, is the
-- request's rate-limit hit riding on its operation (app/rate_rider.py): taken first, in
-- the same atomic step, so a limited request costs one round trip, and a refused one
-- stops here, before anything changes. The answer is then {reply, the window's five
-- numbers} (for the X-RateLimit-* headers), the reply as it would have been: neither
-- copied nor decoded again.
local function ride(main)
  if not A.rate then return main() end
  -- A call sent again took its hit on its first arrival: its re-send takes none (cost 0
  -- only reads the window, for the headers), or a first run that took the window's last
  -- slot (a claim that leased a task, a completion, a create) would be answered 429.
  if (A.call and sent_before()) or created_before() then A.rate.cost = 0 end
  local window = rate_window(A.rate)
  local reply = window[1] == 0 and '{"outcome":"rate_limited"}' or main()
  return {reply, unpack(window)}
end

-- A write redis-py sent twice (it sends a command again when its connection drops, even
-- after Redis ran it) runs once: the first run keeps its reply under the call's id
-- (A.call, made per call by scripts.py) for SENT_ONCE_MS, and the second answers that
-- reply and changes nothing. The scripts in lua_source.SENT_ONCE run as
-- finish(ride(once(main))). A run that changed nothing a second run would not redo
-- (an empty claim: agents poll) sets UNCHANGED instead: its reply is not kept, and a
-- re-send runs afresh, as a new call would, so an idle poll writes no reply.
local UNCHANGED = false
local function once(main)
  return function()
    local first = sent_before()
    if first then return first end
    local reply = main()
    if not UNCHANGED then redis.call('SET', key('call', A.call), reply, 'PX', SENT_ONCE_MS) end
    return reply
  end
end

-- The service's own event about `task`; its payload always names the task. Its entry's
-- source is '' (the service's: no client's event has an empty one), and left out of
-- `data` (see emit_raw): who published it and its metadata (always the service, always
-- empty), the payload's task_id, trace_id when it is the task's id, priority when it is
-- the default. `unstored` (a status change, move()): payload values the entry leaves out
-- when the payload holds them; `data` then holds the rest as "p", not "payload", which
-- tells envelope_of to restore them. `listed` (task.created: CREATED_PAYLOAD): the
-- payload's names in the order it is shown; `data` holds only their values, as "c", and
-- no priority, since the payload's own decides it.
local function emit(event_type, task, payload, unstored, listed)
  local task_id = task.task_id or ''
  if task.seq then STORED[task_id] = true end
  local named = ''
  if task_id ~= '' and payload.task_id == task_id then
    payload.task_id = nil
    named = '"task_id":' .. cjson.encode(task_id)
  end
  local body, kept
  if listed then
    local values, members = {}, {}
    for i, name in ipairs(listed) do
      values[i] = cjson.encode(payload[name])
      members[i] = '"' .. name .. '":' .. values[i]
    end
    body = '{' .. table.concat(members, ',') .. '}'
    kept = '{"c":[' .. table.concat(values, ',') .. ']'
  else
    body = cjson.encode(payload)
    kept = '{"payload":' .. body
  end
  local restored = body
  if named ~= '' then
    restored = body == '{}' and ('{' .. named .. '}') or ('{' .. named .. ',' .. string.sub(body, 2))
  end
  if unstored then
    for name, value in pairs(unstored) do
      if payload[name] == value then payload[name] = nil end
    end
    kept = '{"p":' .. cjson.encode(payload)
  end
  local stored, implied = '', ',"published_by":"orchestrator","metadata":{}'
  -- A task whose trace is its own id does not store it (model.UNSTORED_DEFAULTS).
  local trace = task.trace_id or (task.seq and task_id)
  if trace and trace == task_id then
    implied = implied .. ',"trace_id":' .. cjson.encode(task_id)
  else
    stored = ',"trace_id":' .. (trace and cjson.encode(trace) or 'null')
  end
  local shown = ''
  local priority = EVENT_PRIORITY[task.priority] or DEFAULT_EVENT_PRIORITY
  if priority == DEFAULT_EVENT_PRIORITY then
    implied = implied .. ',"priority":"' .. priority .. '"'
  else
    shown = ',"priority":"' .. priority .. '"'
  end
  return emit_raw(event_type, task_id, '', kept .. stored .. (listed and '' or shown) .. '}',
    '{"payload":' .. restored .. stored .. shown .. implied .. '}')
end

-- Deadlines -------------------------------------------------------------------
-- Four kinds of entries fall due with time, each a sorted set scored by when (ms).
-- `timers` holds, per kind, a lower bound of its earliest score (no member: the kind is
-- empty) and `~` at +inf, so a key that exists says the bounds are kept. settle() reads
-- it in one command and touches a kind only once its bound has passed: no idle work.
local TIMER_KINDS = {'leases', 'scheduled', 'expiring', 'approvals_deadlines'}
local BOUNDS = nil

local function bounds()
  if BOUNDS then return BOUNDS end
  BOUNDS = {}
  local flat = redis.call('ZRANGE', key('timers'), 0, -1, 'WITHSCORES')
  if #flat > 0 then
    for i = 1, #flat, 2 do BOUNDS[flat[i]] = tonumber(flat[i + 1]) end
    BOUNDS['~'] = nil
    return BOUNDS
  end
  -- First call on this store (or on one written before timers existed): read each head.
  for _, kind in ipairs(TIMER_KINDS) do
    local head = redis.call('ZRANGE', key(kind), 0, 0, 'WITHSCORES')
    if head[2] then
      BOUNDS[kind] = tonumber(head[2])
      redis.call('ZADD', key('timers'), head[2], kind)
    end
  end
  redis.call('ZADD', key('timers'), '+inf', '~')
  return BOUNDS
end

-- Schedule `member` in deadline kind `kind` at `ms`; lowers the kind's bound if needed.
local function add_timer(kind, ms, member)
  redis.call('ZADD', key(kind), ms, member)
  local b = bounds()
  if not b[kind] or ms < b[kind] then
    b[kind] = ms
    redis.call('ZADD', key('timers'), ms, kind)
  end
end

-- After working a kind off, its bound is its earliest entry again (or it has none).
local function rebound(kind)
  local head = redis.call('ZRANGE', key(kind), 0, 0, 'WITHSCORES')
  local b = bounds()
  if head[2] then
    b[kind] = tonumber(head[2])
    redis.call('ZADD', key('timers'), head[2], kind)
  else
    b[kind] = nil
    redis.call('ZREM', key('timers'), kind)
  end
end

-- Whether some entry of `kind` may have fallen due.
local function due(kind)
  local bound = bounds()[kind]
  return bound ~= nil and bound <= NOW
end

-- Tasks ------------------------------------------------------------------------
-- A task's one index for its type and agent both (`routes` names every such index as
-- `<type>:<agent>`, which list_tasks.lua reads): a type's or an agent's listing merges
-- the few routes it has, and each task costs Redis one index entry, not two.
local function file_route(id, task_type, agent, seq)
  redis.call('ZADD', key('by_route', task_type, agent), seq, id)
  redis.call('SADD', key('routes'), task_type .. ':' .. agent)
end

-- Priority first, then creation order: rank * 1e15 + seq stays an exact double.
local function enqueue(id, task)
  local score = PRIORITY_RANK[task.priority] * 1e15 + tonumber(task.seq)
  redis.call('ZADD', key('queue', task.assigned_to), score, id)
  redis.call('SADD', key('agents'), task.assigned_to)
end

-- A new task's fields, written by its first move() in the same HSET as its status.
local UNSAVED = {}

-- A change to a task made now: the fields {'updated_at', NOW_ISO} to write with it, or
-- none while NOW is still the task's creation millisecond. A task's hash leaves out
-- updated_at while it equals created_at (model.UNSTORED_DEFAULTS' comment); readers put
-- it back. Not writing it must not leave another time standing: a stored one (only a
-- clock stepped back can leave one) goes in `drop` (move()'s HDEL), or, with no `drop`,
-- is deleted here; neither happens on a task that never stored one.
local function touched(id, task, drop)
  if NOW_ISO ~= task.created_at then return {'updated_at', NOW_ISO} end
  if task.updated_at then
    if drop then
      drop[#drop + 1] = 'updated_at'
    else
      redis.call('HDEL', key('task', id), 'updated_at')
      task.updated_at = nil
    end
  end
  return {}
end

-- Set by resolve_dependants() below; move() calls it when a task finishes, and it moves
-- the dependants itself (declared here so move() can name it).
local resolve_dependants

-- The one place a task changes state: queue, lease, schedule, status index, fields and
-- event move together. `fields` is a flat list of extra hash fields to write. `task` is
-- updated in place (no read back) and returned.
local function move(id, task, to, fields, event_type, lease_ms)
  local from = task.status
  local k = key('task', id)
  local drop = {}
  if from == 'assigned' then
    redis.call('ZREM', key('queue', task.assigned_to), id)
  elseif from == 'in_progress' then
    redis.call('ZREM', key('leases'), id)
    -- Tasks running before the counter existed would drive it below zero.
    if redis.call('HINCRBY', key('running'), task.assigned_to, -1) < 0 then
      redis.call('HSET', key('running'), task.assigned_to, 0)
    end
  elseif from == 'scheduled' then
    redis.call('ZREM', key('scheduled'), id)
  elseif TERMINAL[from] then
    -- Sent back (retry): no longer due for purging.
    redis.call('ZREM', key('expiring'), id)
    drop = {'completed_at', 'expires_ms', 'error'}
  end
  local out = UNSAVED[id] or {}
  UNSAVED[id] = nil
  out[#out + 1] = 'status'; out[#out + 1] = to
  for _, v in ipairs(touched(id, task, drop)) do out[#out + 1] = v end
  for _, v in ipairs(fields or {}) do out[#out + 1] = v end
  if to == 'in_progress' then
    local expires = NOW + lease_ms
    add_timer('leases', expires, id)
    redis.call('HINCRBY', key('running'), task.assigned_to, 1)
    out[#out + 1] = 'lease_expires_at'; out[#out + 1] = iso(expires)
    -- Remembered so a heartbeat without lease_seconds renews the lease the claim chose.
    out[#out + 1] = 'lease_ms'; out[#out + 1] = tostring(lease_ms)
    -- Fencing: every lease gets a larger token, so a report from an older lease is known.
    out[#out + 1] = 'lease_token'
    out[#out + 1] = tostring((tonumber(task.lease_token) or 0) + 1)
  elseif task.lease_expires_at or (to == 'assigned' and task.claimed_by) then
    drop[#drop + 1] = 'lease_expires_at'
    drop[#drop + 1] = 'lease_ms'
    -- Back in the queue (lease expired): nobody holds it any more.
    if to == 'assigned' then drop[#drop + 1] = 'claimed_by' end
  end
  if to == 'scheduled' then add_timer('scheduled', tonumber(task.run_at_ms), id) end
  if TERMINAL[to] then
    local expires = NOW + CFG.task_ttl * 1000
    out[#out + 1] = 'completed_at'; out[#out + 1] = NOW_ISO
    out[#out + 1] = 'expires_ms'; out[#out + 1] = tostring(expires)
    add_timer('expiring', expires, id)
    redis.call('HINCRBY', key('totals'), to, 1)
  end
  -- A field set again in `out` (an error on the way back to failed) is not dropped.
  local kept = {}
  for i = 1, #out, 2 do kept[out[i]] = true end
  local gone = {}
  for _, name in ipairs(drop) do
    if task[name] and not kept[name] then gone[#gone + 1] = name end
    task[name] = nil
  end
  if #gone > 0 then redis.call('HDEL', k, unpack(gone)) end
  redis.call('HSET', k, unpack(out))
  for i = 1, #out, 2 do task[out[i]] = out[i + 1] end
  if from then redis.call('ZREM', key('by_status', from), id) end
  redis.call('ZADD', key('by_status', to), task.seq, id)
  if to == 'assigned' then enqueue(id, task) end
  event_type = event_type or ('task.' .. to)
  -- Its entry leaves out what most status changes hold (envelope_of, events.py, restores
  -- them): a status that is the type's suffix (task.assigned: assigned), no previous
  -- status, no error, no retries.
  emit(event_type, task, {
    task_id = id, status = to, previous_status = from or cjson.null,
    assigned_to = task.assigned_to, retry_count = tonumber(task.retry_count or '0'),
    error = task.error or cjson.null,
  }, {status = string.match(event_type, '^[^.]*%.(.*)$'), previous_status = cjson.null,
    error = cjson.null, retry_count = 0})
  if TERMINAL[to] then resolve_dependants(id, to) end
  return task
end

-- Open a gated task's approval: pending until `required` eligible principals approve,
-- expiring after the rule's timeout (or CFG.approval_timeout). `gate` is what
-- create_task was given: who asked (and every identity behind them), who may decide,
-- how many, the payload's hash, and a policy rule's escalation.
local function open_approval(id, task, gate)
  local aid = gate.approval_id
  local expires = NOW + (gate.timeout_ms or CFG.approval_timeout * 1000)
  local record = {'approval_id', aid, 'task_id', id,
    'task_type', task.type, 'priority', task.priority, 'reason', gate.reason,
    'status', 'pending', 'requested_by', gate.requested_by, 'requested_at', NOW_ISO,
    'expires_at', iso(expires), 'required_approvals', tostring(gate.required),
    'eligible', cjson.encode(gate.eligible), 'approvals', '[]', 'payload_version', '1',
    'payload_sha256', gate.payload_sha256, 'payload_keys', cjson.encode(gate.payload_keys),
    'escalated', '0', 'requester_identities', cjson.encode(gate.requester_identities)}
  if gate.policy then
    for _, v in ipairs({'policy', gate.policy, 'escalate_to', cjson.encode(gate.escalate_to
      or {}), 'extend_ms', tostring(gate.extend_ms or 0)}) do record[#record + 1] = v end
  end
  if gate.requested_by_act then
    record[#record + 1] = 'requested_by_act'
    record[#record + 1] = cjson.encode(gate.requested_by_act)
  end
  redis.call('HSET', key('approval', aid), unpack(record))
  -- In the order approvals are asked for (a fresh number from the creation sequence,
  -- unique), not the task's: a task held back by its dependencies asks later than
  -- tasks created after it, and the oldest pending approval must be the one that
  -- has waited longest (/health, the pending list).
  redis.call('ZADD', key('approvals_pending'), redis.call('INCR', key('seq')), aid)
  add_timer('approvals_deadlines', expires, aid)
  emit('approval.requested', task, {approval_id = aid, task_id = id, reason = gate.reason,
    requested_by = gate.requested_by, expires_at = iso(expires)})
end

-- A task with nothing left to wait for goes on: first to its approval gate (its `gate`
-- field, when gated and not yet asked), then to its run time while that is ahead, then
-- to its agent's queue. Every way out of blocked and awaiting_approval goes through here.
-- `gate` is a new task's gate, never stored (a stored one is the task's `gate` field).
local function release(id, task, gate)
  if task.gate then
    gate = cjson.decode(task.gate)
    redis.call('HDEL', key('task', id), 'gate')
    task.gate = nil
  end
  if gate then
    task = move(id, task, 'awaiting_approval', {'approval_id', gate.approval_id})
    open_approval(id, task, gate)
    return task
  end
  if task.run_at_ms and tonumber(task.run_at_ms) > NOW then
    return move(id, task, 'scheduled')
  end
  return move(id, task, 'assigned')
end

-- A finished task settles its blocked dependants: completed counts one dependency done
-- (the last one releases the dependant); failed or cancelled cancels the dependant,
-- which in turn settles its own (a work list, so a long chain never deepens the stack).
local cascade = nil
resolve_dependants = function(id, status)
  if cascade then
    cascade[#cascade + 1] = {id, status}
    return
  end
  cascade = {{id, status}}
  local i = 1
  while i <= #cascade do
    local done_id, done_status = cascade[i][1], cascade[i][2]
    local dk = key('dependants', done_id)
    for _, dep in ipairs(redis.call('SMEMBERS', dk)) do
      local task = read_task(dep)
      if task.status == 'blocked' then
        if done_status ~= 'completed' then
          move(dep, task, 'cancelled', {'error', 'dependency ' .. done_id .. ' ' .. done_status})
        elseif redis.call('HINCRBY', key('task', dep), 'deps_left', -1) <= 0 then
          release(dep, task)
        end
      end
    end
    redis.call('DEL', dk)
    i = i + 1
  end
  cascade = nil
end

-- The dependencies a blocked task still waits for, in the order given: {{task_id, status}}.
-- Those whose dependants set still holds it (create_task adds it there; a dependency that
-- finishes empties its set), so a dependency that completed and expired since is not
-- named, and one whose hash is gone but not finished shows as 'expired'.
local function unfinished_dependencies(id, task)
  local unfinished = {}
  if task.status ~= 'blocked' or not task.depends_on then return unfinished end
  for _, dep in ipairs(cjson.decode(task.depends_on)) do
    if redis.call('SISMEMBER', key('dependants', dep), id) == 1 then
      local status = redis.call('HGET', key('task', dep), 'status')
      unfinished[#unfinished + 1] = {task_id = dep, status = status or 'expired'}
    end
  end
  return unfinished
end

-- What a new or retried task's dependencies hold it to, in the order given: `waiting`
-- (not finished: it blocks on them), `missing` (no such task: unknown, or ended and
-- expired), and the first that ended without completing with its status.
local function dependency_states(deps)
  local waiting, missing, ended, ended_status = {}, {}, nil, nil
  for _, dep in ipairs(deps) do
    local status = redis.call('HGET', key('task', dep), 'status')
    if not status then
      missing[#missing + 1] = dep
    elseif RETRYABLE[status] then
      if not ended then ended, ended_status = dep, status end
    elseif status ~= 'completed' then
      waiting[#waiting + 1] = dep
    end
  end
  return waiting, missing, ended, ended_status
end

-- Send a failed or cancelled task back as new (retry_count 0, no error), keeping its id
-- and history, through what it still waits for: a dependency not completed yet blocks it
-- again (that dependency's end settles it, as at creation), a run time still ahead
-- schedules it, and otherwise it joins its agent's queue. Refused, with why: a task that
-- never passed its approval gate (retrying must not skip the people who said no), or one
-- whose dependency failed or was cancelled (retry that first). A dependency gone from
-- Redis ended and expired: it no longer holds the task back.
local function retry(id, task)
  if task.gate then return 'not_approved' end
  if task.approval_id
      and redis.call('HGET', key('approval', task.approval_id), 'status') ~= 'approved' then
    return 'not_approved'
  end
  local waiting, _, ended, ended_status = dependency_states(
    task.depends_on and cjson.decode(task.depends_on) or {})
  if ended then return 'dependency_ended', ended, ended_status end
  if #waiting > 0 then
    for _, dep in ipairs(waiting) do redis.call('SADD', key('dependants', dep), id) end
    move(id, task, 'blocked', {'retry_count', '0', 'deps_left', tostring(#waiting)},
      'task.retried')
  elseif task.run_at_ms and tonumber(task.run_at_ms) > NOW then
    move(id, task, 'scheduled', {'retry_count', '0'}, 'task.retried')
  else
    move(id, task, 'assigned', {'retry_count', '0'}, 'task.retried')
  end
  return nil
end

-- A scheduled task whose run time came: to its agent's queue.
local function start_scheduled(id)
  local task = read_task(id)
  if task.status == 'scheduled' then
    move(id, task, 'assigned')
  else
    redis.call('ZREM', key('scheduled'), id)
  end
end

-- Fencing: a caller that names a lease token must hold that lease now. A token from an
-- expired lease (the task requeued, perhaps claimed again since) gets 'lease_lost'.
local function lease_lost(task)
  if A.lease_token == nil then return nil end
  if task.status == 'in_progress' and tonumber(task.lease_token) == A.lease_token then
    return nil
  end
  return cjson.encode({outcome = 'lease_lost', status = task.status})
end

-- A lease ran out: back to the queue with one more retry, or failed past max_retries.
local function expire_lease(id, task)
  task = task or read_task(id)
  if task.status ~= 'in_progress' then
    redis.call('ZREM', key('leases'), id)
    return task
  end
  local retries = tonumber(task.retry_count or '0') + 1
  redis.call('HINCRBY', key('totals'), 'lease_expired', 1)
  if retries > (tonumber(task.max_retries) or DEFAULT_MAX_RETRIES) then
    return move(id, task, 'failed', {'error', 'lease expired'})
  end
  return move(id, task, 'assigned', {'retry_count', tostring(retries)}, 'task.requeued')
end

-- Terminal tasks past ORCHESTRATOR_TASK_TTL leave the store and every index, with their
-- event index (its field goes with the hash; the events stay in the stream until it is
-- trimmed).
local function purge_task(id)
  local k = key('task', id)
  local row = redis.call('HMGET', k, 'status', 'type', 'assigned_to')
  if row[1] and TERMINAL[row[1]] then
    redis.call('ZREM', key('by_status', row[1]), id)
    redis.call('ZREM', key('by_route', row[2], row[3]), id)
    redis.call('DEL', k, key('dependants', id), key('task_events', id))
    STORED[id], INDEX_FIELD[id] = nil, nil
  end
  redis.call('ZREM', key('expiring'), id)
end

-- Approvals --------------------------------------------------------------------
local function add_to_history(aid)
  local history = key('approvals_history')
  -- Scored by decision time, kept strictly increasing so decisions within the same
  -- millisecond still list newest first (a tie would fall back to id order).
  local score = NOW
  local last = redis.call('ZREVRANGE', history, 0, 0, 'WITHSCORES')
  if #last > 0 and tonumber(last[2]) >= score then score = tonumber(last[2]) + 1 end
  redis.call('ZADD', history, score, aid)
  redis.call('PEXPIRE', key('approval', aid), CFG.history_ttl * 1000)
  local overflow = redis.call('ZRANGE', history, 0, -(CFG.max_history + 1))
  for _, old in ipairs(overflow) do redis.call('DEL', key('approval', old)) end
  if #overflow > 0 then redis.call('ZREMRANGEBYRANK', history, 0, #overflow - 1) end
  redis.call('ZREMRANGEBYSCORE', history, '-inf', NOW - CFG.history_ttl * 1000)
end

-- Close a pending approval: record the decision, move it to the history, settle its task.
local function close_approval(aid, status, decided_by, fields)
  local ak = key('approval', aid)
  local out = {'status', status, 'decided_at', NOW_ISO}
  if decided_by then out[#out + 1] = 'decided_by'; out[#out + 1] = decided_by end
  for _, v in ipairs(fields or {}) do out[#out + 1] = v end
  redis.call('HSET', ak, unpack(out))
  redis.call('ZREM', key('approvals_pending'), aid)
  redis.call('ZREM', key('approvals_deadlines'), aid)
  add_to_history(aid)
  local approval = hgetall(ak)
  emit('approval.' .. status, read_task(approval.task_id), {
    approval_id = aid, task_id = approval.task_id, status = status,
    decided_by = decided_by or cjson.null,
    rejection_reason = approval.rejection_reason or cjson.null,
  })
  return approval
end

-- A policy's escalation, once: more people may decide, for `extend` more time. Returns
-- false when the approval has none (left) and must time out.
local function escalate_approval(aid, approval)
  local extra = cjson.decode(approval.escalate_to or '[]')
  if approval.escalated == '1' or #extra == 0 then return false end
  local eligible = cjson.decode(approval.eligible)
  for _, spec in ipairs(extra) do eligible[#eligible + 1] = spec end
  local expires = tonumber(redis.call('ZSCORE', key('approvals_deadlines'), aid))
    + tonumber(approval.extend_ms)
  redis.call('HSET', key('approval', aid), 'eligible', cjson.encode(eligible),
    'escalated', '1', 'expires_at', iso(expires))
  add_timer('approvals_deadlines', expires, aid)
  emit('approval.escalated', read_task(approval.task_id), {
    approval_id = aid, task_id = approval.task_id, escalate_to = extra,
    eligible = eligible, expires_at = iso(expires),
  })
  return true
end

local function timeout_approval(aid)
  local approval = hgetall(key('approval', aid))
  if approval.status ~= 'pending' then
    redis.call('ZREM', key('approvals_pending'), aid)
    redis.call('ZREM', key('approvals_deadlines'), aid)
    return
  end
  if escalate_approval(aid, approval) then return end
  close_approval(aid, 'timeout', nil)
  local task = read_task(approval.task_id)
  if task.status == 'awaiting_approval' then
    move(approval.task_id, task, 'cancelled', {'error', 'approval timed out'})
  end
end

-- Whether anyone of `decider_identities` (the decider and its token's `act` chain,
-- normalised by the caller) is among `identities`: the one comparison of people.
local function shares_identity(identities, decider_identities)
  local behind = {}
  for _, id in ipairs(identities) do behind[id] = true end
  for _, id in ipairs(decider_identities) do
    if behind[id] then return true end
  end
  return false
end

-- Four eyes: whether anyone behind the decision is anyone behind the request (who may
-- withdraw it by rejecting, but never approve it). Approvals stored before identities
-- were kept compare by the requester's id, lower-cased.
local function is_requester(approval, decider_identities)
  local requester = approval.requester_identities
  requester = requester and cjson.decode(requester) or {string.lower(approval.requested_by)}
  return shares_identity(requester, decider_identities)
end

-- N of M counts people, not credentials: everyone behind the approvals counted for the
-- current payload version (`approver_identities`, kept with them), so a token minted for
-- another subject, or for the same id in another case, cannot count its minter twice.
-- Approvals counted before the field was kept stand for their approver's id, lower-cased.
local function approver_identities(approval, approvals)
  if approval.approver_identities then return cjson.decode(approval.approver_identities) end
  local ids = {}
  for i, given in ipairs(approvals) do ids[i] = string.lower(given.by) end
  return ids
end

-- Time out one approval if its deadline has passed, whatever settle()'s budget reached:
-- a read or decision on this approval must never see it pending past its expiry. An
-- escalation moves the deadline by its extra time from the old deadline, not from now,
-- so after a quiet spell the new one may have passed too: then it times out in the same
-- step (escalation happens once, so this goes round at most twice). True when it did.
local function settle_approval(aid)
  local deadline = redis.call('ZSCORE', key('approvals_deadlines'), aid)
  local applied = false
  while deadline and tonumber(deadline) <= NOW do
    timeout_approval(aid)
    applied = true
    deadline = redis.call('ZSCORE', key('approvals_deadlines'), aid)
  end
  return applied
end

-- Everything that falls due with time, applied before any read or change: one command
-- when nothing is due; bounded by `budget` entries per kind when much is (a backlog is
-- worked off over several requests, or by the sweep command).
local function settle(budget)
  budget = budget or SETTLE_BUDGET
  local work = {leases = expire_lease, scheduled = start_scheduled, expiring = purge_task,
    approvals_deadlines = settle_approval}
  for _, kind in ipairs(TIMER_KINDS) do
    if due(kind) then
      for _, id in ipairs(redis.call('ZRANGEBYSCORE', key(kind), '-inf', NOW,
          'LIMIT', 0, budget)) do
        work[kind](id)
      end
      rebound(kind)
    end
  end
end

-- Memory ----------------------------------------------------------------------
-- The digits (or what `value`, an anchored pattern, matches) INFO text gives for the
-- field `name`, or nil. Found with a plain find: a pattern such as 'maxmemory:(%d+)' is
-- tried at every position of the ~2 KB text, which cost /health three times what INFO
-- itself costs.
local function info_field(text, name, value)
  local label = name .. ':'
  local at = 1
  if string.sub(text, 1, #label) ~= label then
    at = string.find(text, '\n' .. label, 1, true)
    if not at then return nil end
    at = at + 1
  end
  return string.match(text, value or '^%d+', at + #label)
end

-- Redis' used memory and maxmemory (0 = no limit), in bytes, from INFO (a store without
-- INFO, like the in-process fake of memory://, has no limit). `info`: INFO text already
-- read (with its memory section), else INFO memory is asked.
local function memory(info)
  info = info or redis.pcall('INFO', 'memory')
  if type(info) ~= 'string' then return {used = 0, max = 0} end
  local used = tonumber(info_field(info, 'used_memory')) or 0
  local max = tonumber(info_field(info, 'maxmemory')) or 0
  return {used = used, max = max}
end

-- Whether used memory passed CFG.memory_high_watermark percent of maxmemory.
local function memory_high(mem)
  return mem.max > 0 and mem.used * 100 >= mem.max * CFG.memory_high_watermark
end

-- Whether `agent` already holds as many leases as ORCHESTRATOR_AGENT_CONCURRENCY lets it
-- (CFG.agent_caps; an agent not named there has no cap).
local function at_cap(agent)
  local cap = CFG.agent_caps and CFG.agent_caps[agent]
  return cap ~= nil and tonumber(redis.call('HGET', key('running'), agent) or '0') >= cap
end

-- Read one task as the outside world should see it right now.
local function fresh_task(id)
  local task = read_task(id)
  -- Its approval's timeout (or escalation) first: a task read, cancelled or moved must
  -- not be answered as awaiting an approval that has expired.
  if task.status == 'awaiting_approval' and task.approval_id
      and settle_approval(task.approval_id) then
    task = read_task(id)
  end
  if task.status == 'in_progress' then
    local deadline = redis.call('ZSCORE', key('leases'), id)
    if deadline and tonumber(deadline) <= NOW then task = expire_lease(id, task) end
  end
  if task.expires_ms and tonumber(task.expires_ms) <= NOW then
    purge_task(id)
    return {}
  end
  if task.status == 'scheduled' and tonumber(task.run_at_ms) <= NOW then
    return move(id, task, 'assigned')
  end
  return task
end
