-- read_stats: every counter /health and /stats show, after settling what fell due.
-- ARGV[3] settle budget. Returns a JSON object {counts, totals, agents, pending_approvals,
-- now}. Counters are kept exact by the scripts that move tasks, so nothing is recounted.
settle(tonumber(ARGV[3]))
local counts = hgetall(key('counts'))
local totals = hgetall(key('totals'))
local agents = {}
for _, agent in ipairs(redis.call('SMEMBERS', key('agents'))) do
  agents[agent] = redis.call('ZCARD', key('queue', agent))
end
return cjson.encode({counts = counts, totals = totals, agents = agents,
  pending_approvals = redis.call('ZCARD', key('approvals_pending')), now = NOW_ISO})
