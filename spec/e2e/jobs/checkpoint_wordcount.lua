-- spec/e2e/jobs/checkpoint_wordcount.lua: running word totals over the files moved into a
-- directory, checkpointed every batch, restartable from the checkpoint directory.
--   dstream checkpoint_wordcount.lua IN_DIR CHECKPOINT_DIR TOTALS_FILE|-
-- Every file in IN_DIR is read once (also the ones there before the first start: nothing is
-- skipped), split into words on white space, and the per-word totals are kept with
-- update_state_by_key (named "totals"). After every batch the totals go to TOTALS_FILE as
-- sorted "word count" lines, written to TOTALS_FILE.tmp and renamed over it (so the file is
-- always a whole batch's totals); "-" writes nothing. Prints "ready recovered=<batch time ms>"
-- (or "recovered=none") once started, then waits until it is stopped (SIGTERM: graceful).
local dstream = require("dstream")

local dir, checkpoint_dir, totals_path = arg[1], arg[2], arg[3]
if not (dir and checkpoint_dir and totals_path) then
  error("usage: checkpoint_wordcount.lua IN_DIR CHECKPOINT_DIR TOTALS_FILE|-", 0)
end

local ctx = dstream.get_or_create(checkpoint_dir, function()
  local ctx = dstream.context { batch = "200ms", checkpoint_interval = "200ms", workers = 2,
    partitions = 2, name = "e2e-checkpoint-wordcount" }
  ctx:text_file_stream(dir, { new_files_only = false })
    :flat_map(function(line)
      local words = {}
      for w in line:gmatch("%S+") do words[#words + 1] = w end
      return words
    end)
    :map(function(w) return w, 1 end)
    :update_state_by_key(function(values, total)
      total = total or 0
      for i = 1, #values do total = total + values[i] end
      return total
    end)
    :name("totals")
    :foreach_rdd(function(rdd)
      if totals_path == "-" then return end
      local rows = rdd:collect()
      table.sort(rows, function(a, b) return a[1] < b[1] end)
      local lines = {}
      for i, kv in ipairs(rows) do lines[i] = kv[1] .. " " .. kv[2] .. "\n" end
      local tmp = totals_path .. ".tmp"
      local f = assert(io.open(tmp, "w"))
      assert(f:write(table.concat(lines)))
      assert(f:close())
      assert(os.rename(tmp, totals_path))
    end)
  return ctx
end)

ctx:start()
print("ready recovered=" .. (ctx.recovered_from and string.format("%d", ctx.recovered_from) or "none"))
io.stdout:flush()
ctx:await_termination()
