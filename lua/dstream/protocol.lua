-- dstream/protocol.lua: the numbers that cross between the driver and the workers, named once.
-- Loaded by both kinds of Lua state; the C side's copies are in runtime/ds_task.h and ds_pool.h.
return {
  -- A task's status (ds_task.h DS_TASK_*, ds_pool.h DS_POOL_TASK_LOST).
  TASK_OK = 0,
  TASK_FAILED = 1,
  TASK_OOM = 2,
  TASK_LOST = 3, -- past the task timeout, and its worker could not be stopped
  TASK_NO_RETRY = 4, -- failed on its records (a bad key): another attempt would fail the same way

  -- Side outputs of a task: targets below 0, beside the partitions (0 ..) of the shuffle.
  TARGET_ACCUMULATORS = -1, -- accumulator updates, merged on the driver (dstream.state.shared)
  TARGET_LATE = -2,         -- records behind the watermark (event time's late_records)
  TARGET_WATERMARK = -3,    -- the largest event time a task saw, and its late count
}
