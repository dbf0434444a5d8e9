-- list_approvals: the pending approvals (oldest first) or the history (newest first).
-- A.view ('pending' | 'history')  A.limit
-- Returns {outcome = 'ok', approvals}.
-- Guarantees: due timeouts apply first, and every approval returned is settled itself,
-- so none is ever shown pending past its expiry; history past its TTL is dropped.
settle()
local limit = A.limit
local out = {}
if A.view == 'pending' then
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
      local approval = hgetall(key('approval', page[i]))
      if approval.status == 'pending' and #out < limit then out[#out + 1] = approval end
    end
  end
  return cjson.encode({outcome = 'ok', approvals = out})
end
redis.call('ZREMRANGEBYSCORE', key('approvals_history'), '-inf',
  NOW - CFG.history_ttl * 1000)
for _, aid in ipairs(redis.call('ZREVRANGE', key('approvals_history'), 0, limit - 1)) do
  local approval = hgetall(key('approval', aid))
  if approval.status then out[#out + 1] = approval end
end
return cjson.encode({outcome = 'ok', approvals = out})
