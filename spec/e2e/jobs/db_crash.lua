-- spec/e2e/jobs/db_crash.lua: a file-stream word count writing to a database, for
-- spec/e2e/database_crash.sh. Only the batch interval is set (200 ms, as in the guide's
-- examples); checkpoint_interval, workers, partitions and to_sql's options are the defaults.
--   dstream db_crash.lua URL IN_DIR CHECKPOINT_DIR
-- Tables (made by the test): lines(line) gets every input line (mode append), totals(word
-- primary key, n) the running count of every word (update_state_by_key, mode upsert).
-- Prints "ready recovered=<ms>|none" once started and "first-input <wall clock ms>" when its
-- first batch holding records has completed; a graceful stop on SIGTERM.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local dstream = require("dstream")

local url, dir, checkpoint_dir = arg[1], arg[2], arg[3]
if not (url and dir and checkpoint_dir) then error("usage: db_crash.lua URL IN_DIR CHECKPOINT_DIR", 0) end

local ctx = dstream.get_or_create(checkpoint_dir, function()
  local ctx = dstream.context { batch = "200ms", name = "e2e-db-crash" }
  local lines = ctx:text_file_stream(dir)
  lines:to_sql { url = url, table = "lines", columns = { "line" } }
  lines
    :flat_map(function(line) return line:gmatch("%S+") end)
    :map(function(w) return w, 1 end)
    :update_state_by_key(function(values, total)
      total = total or 0
      for i = 1, #values do total = total + values[i] end
      return total
    end)
    :to_sql { url = url, table = "totals", columns = { "word", "n" }, mode = "upsert", key = "word" }
  return ctx
end)

require("crash_run")(ctx)
