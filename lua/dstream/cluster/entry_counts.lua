-- dstream/cluster/entry_counts.lua: what a keyed stage's "(repartition)" input counts, driver
-- side (cluster mode, issue 19). Driver's Lua state.
--
-- A message of the repartition topic is a bundle of entries (dstream.worker.bundles), and the
-- clock counts an input's records when it seals a batch: in Kafka messages, a few per batch
-- whatever the number of pairs. The keyed stage's tasks count the entries they decode and
-- apply (an accumulator, dstream.worker.ops.cluster's decoder); once the stage has run, this
-- puts that number in the batch's figure for the input, so the batch's records, the input's
-- total (live page, /api/batches, /api/streams, dstream_source_records_total) and a
-- backpressure rate on it count the records the stage applied, as for any other input.
local shared = require("dstream.state.shared")

local M = {}

-- For the keyed stage reading K: returns the accumulator's id (the stage's tasks add their
-- entries to it) and settle(time), to call once the stage of batch `time` has run.
function M.new(ctx, K)
  local acc = shared.accumulator(ctx, 0)
  local seen = 0
  K.input.records_from_batches = true -- (its consumer's count is of messages)
  return acc.id, function(time)
    local entries = acc.value - seen
    seen = acc.value
    local input, batch = K.input, ctx.running
    if not (input and batch and batch.time == time) then return end
    for _, src in ipairs(batch.sources or {}) do
      if src.id == input.id then
        local more = entries - (src.records or 0)
        src.records = entries
        batch.records = (batch.records or 0) + more
        input.records_total = (input.records_total or 0) + more
      end
    end
  end
end

return M
