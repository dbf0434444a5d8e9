-- read_stats: every counter /health, /stats and /metrics show, after settling what fell due.
-- A.settle_budget
-- Returns {outcome = 'ok', counts, totals, agents (queued per agent), oldest (per agent:
-- created_at of its oldest ready task), oldest_approval (requested_at of the oldest
-- pending approval, or absent), pending_approvals, now (Redis' clock), memory {used,
-- max} (bytes; max 0 = no limit), webhooks = {group (XINFO GROUPS fields of the
-- deliverers' group, absent when missing), due (pending deliveries), totals (delivered /
-- dead / attempts)}}.
-- Guarantees: the counters are exact (the scripts that move tasks keep them), so
-- nothing is recounted; at most A.settle_budget entries of each kind are settled first.
-- The oldest ready task is the oldest head among the priority bands: one read per band.
-- A snapshot of the figures is kept and answered again while Redis reports no write
-- since it was taken (rdb_changes_since_last_save counts every write) and no deadline has
-- come: then a call is INFO and GET, whatever the store holds. Memory and the clock are
-- always read live. The counter restarts at 0 after each save and in each new process
-- (a restart, a replica promoted), so it alone can come back to the value kept with
-- figures that no longer hold: the snapshot is stamped "<run_id>:<rdb_saves>:<changes>",
-- which no later state of any process repeats. A snapshot older than SNAPSHOT_MS is
-- never used. It is stored as "<stamp> <valid until> <the reply as JSON, less now and
-- memory>" and answered by appending those two to the text: decoding and encoding the
-- figures again cost more than the rest of the call.
local SNAPSHOT_MS = 5000
local info = redis.pcall('INFO', 'server', 'memory', 'persistence')
local process, changes = nil, nil
if type(info) == 'string' then
  local run_id = info_field(info, 'run_id', '^%x+')
  local saves = info_field(info, 'rdb_saves')
  if run_id and saves then process = run_id .. ':' .. saves .. ':' end
  changes = process and info_field(info, 'rdb_changes_since_last_save')
end
local live_memory = memory(info)
local function live(figures)
  return string.sub(figures, 1, -2) .. ',"now":' .. cjson.encode(NOW_ISO)
    .. ',"memory":' .. cjson.encode(live_memory) .. '}'
end
if changes then
  local kept = redis.call('GET', key('stats_snapshot'))
  local gap = kept and string.find(kept, ' ', 1, true)
  if gap and string.sub(kept, 1, gap - 1) == process .. changes then
    local body = string.find(kept, ' ', gap + 1, true)
    if NOW < tonumber(string.sub(kept, gap + 1, body - 1)) then
      return live(string.sub(kept, body + 1))
    end
  end
end
settle(A.settle_budget)
local agents, oldest = {}, {}
local bands = 0
for _ in pairs(PRIORITY_RANK) do bands = bands + 1 end
for _, agent in ipairs(redis.call('SMEMBERS', key('agents'))) do
  local queue = key('queue', agent)
  agents[agent] = redis.call('ZCARD', queue)
  for rank = 0, bands - 1 do
    local head = redis.call('ZRANGEBYSCORE', queue, string.format('%.0f', rank * 1e15),
      '(' .. string.format('%.0f', (rank + 1) * 1e15), 'LIMIT', 0, 1)
    if #head > 0 then
      -- ISO 8601 with a fixed width: the smallest string is the earliest time.
      local created = redis.call('HGET', key('task', head[1]), 'created_at')
      if created and (oldest[agent] == nil or created < oldest[agent]) then
        oldest[agent] = created
      end
    end
  end
end
local oldest_approval = cjson.null
local first = redis.call('ZRANGE', key('approvals_pending'), 0, 0)
if #first > 0 then
  oldest_approval = redis.call('HGET', key('approval', first[1]), 'requested_at') or cjson.null
end
-- The deliverers' backlog rides along, so /health stays one round trip.
local webhooks = {due = redis.call('ZCARD', key('deliveries_due')),
  totals = hgetall(key('delivery_totals'))}
local groups = redis.pcall('XINFO', 'GROUPS', key('events'))
if type(groups) == 'table' and not groups.err then
  for _, flat in ipairs(groups) do
    local group = as_map(flat)
    if group.name == DELIVERY_GROUP then webhooks.group = group end
  end
end
-- Tasks stored per status: each status index's size (the scripts that move tasks keep
-- the indexes, so nothing is recounted).
local counts = {}
for _, status in ipairs(STATUSES) do
  counts[status] = redis.call('ZCARD', key('by_status', status))
end
local reply = {outcome = 'ok', counts = counts,
  totals = hgetall(key('totals')), agents = agents, oldest = oldest,
  oldest_approval = oldest_approval,
  pending_approvals = redis.call('ZCARD', key('approvals_pending')), webhooks = webhooks}
local figures = cjson.encode(reply)
if changes then
  -- Valid until the first deadline (settle() would change what it shows) and while no
  -- write happens: the writes settle() made, then the SET below itself (one change).
  local valid_until = NOW + SNAPSHOT_MS
  for _, bound in pairs(bounds()) do valid_until = math.min(valid_until, bound) end
  local now_info = redis.call('INFO', 'persistence')
  local next_changes = tonumber(info_field(now_info, 'rdb_changes_since_last_save')) + 1
  -- pcall: a full Redis refuses this write, and the figures matter most just then.
  -- (No save can complete while a script runs: run_id and rdb_saves are still those read.)
  redis.pcall('SET', key('stats_snapshot'), string.format('%s%d %d %s', process,
    next_changes, valid_until, figures), 'PX', SNAPSHOT_MS)
end
return live(figures)
