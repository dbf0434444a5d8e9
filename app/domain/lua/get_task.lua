-- get_task: one task as of now (its expired lease requeued, an expired task gone).
-- ARGV[3] task id.  Returns task_flat (empty when unknown).
settle()
local _, flat = fresh_task(ARGV[3])
return flat
