-- explain_task: the facts that say why a task is where it is, read in one atomic step.
-- A.task_id
-- Returns {outcome = 'ok', task, approval?, queue_rank?, queued?, unfinished? (a blocked
-- task's dependencies not completed yet: [{task_id, status}]), now (ms, Redis' clock)}
--       | {outcome = 'not_found'}.
-- Guarantees: what fell due (this task's approval timeout or escalation, its lease) is
-- applied first, so the explanation matches what a read or decision would see.
settle()
local approval_id = redis.call('HGET', key('task', A.task_id), 'approval_id')
if approval_id then settle_approval(approval_id) end
local task = fresh_task(A.task_id)
if not task.status then return cjson.encode({outcome = 'not_found'}) end
local facts = {outcome = 'ok', task = task, now = NOW}
if approval_id then
  local approval = hgetall(key('approval', approval_id))
  if approval.status then facts.approval = approval end
end
if task.status == 'blocked' then facts.unfinished = unfinished_dependencies(A.task_id, task) end
if task.status == 'assigned' then
  local queue = key('queue', task.assigned_to)
  facts.queue_rank = redis.call('ZRANK', queue, A.task_id)
  facts.queued = redis.call('ZCARD', queue)
end
return cjson.encode(facts)
