-- publish_event: append a client's event to the stream and fan it out on pub/sub.
-- ARGV[3] event_type  ARGV[4] task_id ('' = none)  ARGV[5] source_agent
-- ARGV[6] envelope JSON without event_id.  Returns the event id (the stream id).
return emit_raw(ARGV[3], ARGV[4], ARGV[5], ARGV[6])
