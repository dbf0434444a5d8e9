-- read_approvals: one approval, the pending list (oldest first) or the history (newest first).
-- ARGV[3] 'one' | 'pending' | 'history'  ARGV[4] approval id (one) or limit
-- Returns a list of approval_flat (empty entries skipped). Due timeouts apply first, and
-- every approval returned is settled itself, so none is ever shown pending past expiry.
settle()
local what = ARGV[3]
if what == 'one' then
  settle_approval(ARGV[4])
  return {select(2, hgetall(key('approval', ARGV[4])))}
end
local limit = tonumber(ARGV[4])
local out = {}
if what == 'pending' then
  -- Walk by score (the request sequence, unique) since settling removes entries and
  -- would shift rank offsets under our feet.
  local cursor = '-inf'
  while #out < limit do
    local page = redis.call('ZRANGEBYSCORE', key('approvals_pending'), cursor, '+inf',
      'WITHSCORES', 'LIMIT', 0, limit)
    if #page == 0 then break end
    for i = 1, #page, 2 do
      cursor = '(' .. page[i + 1]
      settle_approval(page[i])
      local approval, flat = hgetall(key('approval', page[i]))
      if approval.status == 'pending' and #out < limit then out[#out + 1] = flat end
    end
  end
  return out
end
redis.call('ZREMRANGEBYSCORE', key('approvals_history'), '-inf',
  NOW - CFG.history_ttl * 1000)
for _, aid in ipairs(redis.call('ZREVRANGE', key('approvals_history'), 0, limit - 1)) do
  local _, flat = hgetall(key('approval', aid))
  if #flat > 0 then out[#out + 1] = flat end
end
return out
