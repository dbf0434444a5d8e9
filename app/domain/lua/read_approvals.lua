-- read_approvals: one approval, the pending list (oldest first) or the history (newest first).
-- ARGV[3] 'one' | 'pending' | 'history'  ARGV[4] approval id (one) or limit
-- Returns a list of approval_flat (empty entries skipped). Due timeouts apply first.
settle()
local what = ARGV[3]
if what == 'one' then return {select(2, hgetall(key('approval', ARGV[4])))} end
local ids
if what == 'pending' then
  ids = redis.call('ZRANGE', key('approvals', 'pending'), 0, tonumber(ARGV[4]) - 1)
else
  redis.call('ZREMRANGEBYSCORE', key('approvals', 'history'), '-inf',
    NOW - CFG.history_ttl * 1000)
  ids = redis.call('ZREVRANGE', key('approvals', 'history'), 0, tonumber(ARGV[4]) - 1)
end
local out = {}
for _, aid in ipairs(ids) do
  local _, flat = hgetall(key('approval', aid))
  if #flat > 0 then out[#out + 1] = flat end
end
return out
