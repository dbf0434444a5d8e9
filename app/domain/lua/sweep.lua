-- sweep: apply everything that fell due (expired leases, scheduled tasks whose time
-- came, expired tasks, approval timeouts) in bounded rounds, for a cron job.
-- A.budget (entries per kind)
-- Returns {outcome = 'ok', still_due}: the entries still due afterwards (call again
-- while it is > 0).
-- Guarantees: bounded work per call (A.budget per kind), applied oldest first.
settle(A.budget)
local still_due = 0
for _, kind in ipairs(TIMER_KINDS) do
  if due(kind) then still_due = still_due + redis.call('ZCOUNT', key(kind), '-inf', NOW) end
end
return cjson.encode({outcome = 'ok', still_due = still_due})
