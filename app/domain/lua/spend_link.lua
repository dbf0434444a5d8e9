-- spend_link: mark a decision link used (A.digest, kept A.ttl_ms); with A.release mark it
-- unused again (its decision was refused, so nothing was decided with it); with A.peek
-- only say whether it was used.
-- Returns {outcome = 'ok'} | {outcome = 'conflict'} (already used).
-- Guarantees: of several uses of one link at once, exactly one gets 'ok'.
local k = key('decision_link', A.digest)
if A.peek then
  return cjson.encode({outcome = redis.call('EXISTS', k) == 1 and 'conflict' or 'ok'})
end
if A.release then
  redis.call('DEL', k)
  return cjson.encode({outcome = 'ok'})
end
if not redis.call('SET', k, NOW_ISO, 'NX', 'PX', A.ttl_ms) then
  return cjson.encode({outcome = 'conflict'})
end
return cjson.encode({outcome = 'ok'})
