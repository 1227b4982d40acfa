-- spec/e2e/jobs/read_ranges.lua: the cluster e2e jobs' record of what each batch read.
--   local read = require("read_ranges")(stream, out)
-- returns the stream as it is, having appended each batch's input offsets with records to
-- OUT.ranges ("partition from until" lines) as the batch is computed: before its pairs go on
-- to the repartition topics, so a batch killed half-way is there too.
local kafka = require("dstream.kafka")

return function(stream, out)
  return stream:transform(function(rdd)
    local rf = assert(io.open(out .. ".ranges", "a"))
    for _, r in ipairs(kafka.offset_ranges(rdd)) do
      if r.count > 0 then rf:write(string.format("%d %d %d\n", r.partition, r.from, r["until"])) end
    end
    rf:close()
    return rdd
  end)
end
