-- spec/e2e/jobs/crash_defaults.lua: a file-stream job at the settings a user gets, for the
-- crash tests of spec/e2e/crash_defaults.sh. Only the batch interval is set (200 ms, as in
-- the guide's examples); checkpoint_interval, workers and partitions are the defaults.
--   dstream crash_defaults.lua totals IN_DIR CHECKPOINT_DIR OUT_FILE
--     running word totals (update_state_by_key "totals") and a one-hour word-count window
--     with an inverse (reduce_by_key_and_window), which over a short run holds every word:
--     and the same totals from SQL (GROUP BY with mode = "running"): after every batch the
--     three go to OUT_FILE as sorted "totals|sql|window word count" lines
--     (written to OUT_FILE.tmp and renamed, so the file is always one batch's); and 50 s
--     event-time windows of the words after a line's first token, the event time being the
--     line number (the N of "prefixNNNN-N") in seconds, with a one-hour watermark delay: no
--     window closes until a line numbered 999999 arrives, so the windows' state lives through
--     every kill; the closed windows are appended to OUT_FILE.event as "event word start count".
--   dstream crash_defaults.lua save IN_DIR CHECKPOINT_DIR OUT_PREFIX
--     every input line, as read, saved with save_as_text_files(OUT_PREFIX).
-- Prints "ready recovered=<ms>|none" once started and "first-input <wall clock ms>" when its
-- first batch holding records has completed; a graceful stop on SIGTERM.
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local dstream = require("dstream")

local mode, dir, checkpoint_dir, out = arg[1], arg[2], arg[3], arg[4]
if not (mode and dir and checkpoint_dir and out) then
  error("usage: crash_defaults.lua totals|save IN_DIR CHECKPOINT_DIR OUT", 0)
end

local ctx = dstream.get_or_create(checkpoint_dir, function()
  local ctx = dstream.context { batch = "200ms", name = "e2e-crash-" .. mode }
  local lines = ctx:text_file_stream(dir)
  if mode == "save" then
    lines:save_as_text_files(out)
    return ctx
  end
  local pairs_ = lines
    :flat_map(function(line) return line:gmatch("%S+") end)
    :map(function(w) return w, 1 end)
  local totals = pairs_:update_state_by_key(function(values, total)
    total = total or 0
    for i = 1, #values do total = total + values[i] end
    return total
  end):name("totals")
  local window = pairs_:reduce_by_key_and_window(function(a, b) return a + b end, "1h", "200ms",
    { inverse = function(a, b) return a - b end })
  -- Event-time windows: state that only a checkpoint and the batch log carry over a kill.
  lines:event_time(function(line) return tonumber(line:match("^%S+-(%d+)")) * 1000 end, { watermark = "1h" })
    :flat_map(function(line)
      local words = {}
      for w in line:gmatch("%S+") do words[#words + 1] = w end
      table.remove(words, 1)
      return words
    end)
    :map(function(w) return w, 1 end)
    :reduce_by_key_and_window(function(a, b) return a + b end, "50s", "50s")
    :foreach_rdd(function(rdd)
      local closed = {}
      for _, kv in ipairs(rdd:collect()) do
        closed[#closed + 1] = string.format("event %s %d %d\n", kv[1], kv[2].start, kv[2].value)
      end
      if #closed == 0 then return end
      local f = assert(io.open(out .. ".event", "a"))
      assert(f:write(table.concat(closed)))
      assert(f:close())
    end)
  local rows = {}
  totals:foreach_rdd(function(rdd)
    rows = {}
    for _, kv in ipairs(rdd:collect()) do rows[#rows + 1] = "totals " .. kv[1] .. " " .. kv[2] end
  end)
  -- The same totals in SQL (mode = "running": keyed state of its own), as "sql word count".
  lines:flat_map(function(line) return line:gmatch("%S+") end):to_table("words", { "word" })
  ctx:sql("SELECT word, COUNT(*) AS n FROM words GROUP BY word", { mode = "running" }):foreach_rdd(function(rdd)
    for _, row in ipairs(rdd:collect()) do rows[#rows + 1] = "sql " .. row.word .. " " .. row.n end
  end)
  window:foreach_rdd(function(rdd)
    for _, kv in ipairs(rdd:collect()) do
      if kv[2] ~= 0 then rows[#rows + 1] = "window " .. kv[1] .. " " .. kv[2] end
    end
    table.sort(rows)
    local f = assert(io.open(out .. ".tmp", "w"))
    assert(f:write(table.concat(rows, "\n"), "\n"))
    assert(f:close())
    assert(os.rename(out .. ".tmp", out))
  end)
  return ctx
end)

require("crash_run")(ctx)
