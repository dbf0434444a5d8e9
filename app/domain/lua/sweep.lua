-- sweep: apply everything that fell due (expired leases, scheduled tasks whose time
-- came, expired tasks, approval timeouts) in bounded rounds, for a cron job.
-- A.budget (entries per kind)
-- Returns {outcome = 'ok', still_due}: the entries still due afterwards (call again
-- while it is > 0).
-- Guarantees: bounded work per call (A.budget per kind), applied oldest first.
settle(A.budget)
local still_due = redis.call('ZCOUNT', key('leases'), '-inf', NOW)
  + redis.call('ZCOUNT', key('scheduled'), '-inf', NOW)
  + redis.call('ZCOUNT', key('expiring'), '-inf', NOW)
  + redis.call('ZCOUNT', key('approvals_deadlines'), '-inf', NOW)
return cjson.encode({outcome = 'ok', still_due = still_due})
