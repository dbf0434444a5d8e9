-- publish_event: append a client's event to the stream and fan it out on pub/sub.
-- ARGV[3] event_type  ARGV[4] task_id ('' = none)  ARGV[5] source_agent
-- ARGV[6] envelope JSON object without event_id and timestamp.
-- Returns {event id (the stream id), timestamp}. The timestamp comes from Redis' clock,
-- like the id, so stored order and timestamps agree across workers and instances.
-- Guarantees: the stream entry and both pub/sub messages happen in this one call.
local data = string.sub(ARGV[6], 1, -2) .. ',"timestamp":"' .. NOW_ISO .. '"}'
return {emit_raw(ARGV[3], ARGV[4], ARGV[5], data), NOW_ISO}
