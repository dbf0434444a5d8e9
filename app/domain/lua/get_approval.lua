-- get_approval: one approval as of now.
-- A.approval_id
-- Returns {outcome = 'ok', approval} | {outcome = 'not_found'} (unknown, or past its
-- history TTL).
-- Guarantees: an approval past its deadline is timed out first (its task cancelled),
-- whatever settle()'s budget reached, so it is never shown pending past its expiry.
settle()
settle_approval(A.approval_id)
local approval = hgetall(key('approval', A.approval_id))
if not approval.status then return cjson.encode({outcome = 'not_found'}) end
return cjson.encode({outcome = 'ok', approval = approval})
