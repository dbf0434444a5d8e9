-- publish_event: append a client's event to the stream and fan it out on pub/sub.
-- A.event_type  A.source_agent  A.task_id (absent = none)
-- A.data: the rest of the envelope (published_by, trace_id, priority, payload,
-- metadata), as JSON text, not an object, so the client's payload is stored exactly as
-- sent (cjson would re-encode its numbers to 14 digits and its empty arrays as objects).
-- Returns {outcome = 'ok', event_id (the stream id), timestamp}. The timestamp comes from
-- Redis' clock, like the id, so stored order and timestamps agree across workers and
-- instances.
-- Guarantees: the stream entry and both pub/sub messages happen in this one call.
local id = emit_raw(A.event_type, A.task_id or '', A.source_agent, A.data, A.data)
return cjson.encode({outcome = 'ok', event_id = id, timestamp = NOW_ISO})
