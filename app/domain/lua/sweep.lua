-- sweep: apply everything that fell due (expired leases, expired tasks, approval
-- timeouts) in bounded rounds, for a cron job. ARGV[3] budget per kind.
-- Returns the number of entries still due afterwards (call again while it is > 0).
settle(tonumber(ARGV[3]))
return redis.call('ZCOUNT', key('leases'), '-inf', NOW)
  + redis.call('ZCOUNT', key('expiring'), '-inf', NOW)
  + redis.call('ZCOUNT', key('approvals_deadlines'), '-inf', NOW)
