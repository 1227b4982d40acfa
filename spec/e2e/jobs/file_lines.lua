-- spec/e2e/jobs/file_lines.lua: every line of the files moved into a directory, counted.
--   dstream file_lines.lua DIR EXPECTED_LINES [LIMIT_SECONDS]
-- Counts each distinct line per batch on the workers (map to a pair, reduce_by_key), adds the
-- counts into driver totals, and stops once EXPECTED_LINES lines were counted (plus a few
-- batches more, where a file read twice would show), or after LIMIT_SECONDS. Prints "ready"
-- once started, then "count<TAB>line" for every line seen, and "# batches B lines L" on stderr.
local dstream = require("dstream")

local dir, expected, limit = arg[1], tonumber(arg[2]), tonumber(arg[3] or 40)
local ctx = dstream.context { batch = "250ms", name = "e2e-file-lines" }

local totals, lines, batches = {}, 0, 0
ctx:text_file_stream(dir)
  :map(function(line) return line, 1 end)
  :reduce_by_key(function(a, b) return a + b end)
  :foreach_rdd(function(rdd)
    batches = batches + 1
    for _, kv in ipairs(rdd:collect()) do
      totals[kv[1]] = (totals[kv[1]] or 0) + kv[2]
      lines = lines + kv[2]
    end
  end)

ctx:start()
print("ready")
io.stdout:flush()
local deadline = os.time() + limit
while lines < expected and os.time() < deadline do
  if ctx:await_termination(0.2) then break end
end
ctx:await_termination(0.75)
ctx:stop { graceful = true }

for line, n in pairs(totals) do print(n .. "\t" .. line) end
io.stderr:write(string.format("# batches %d lines %d\n", batches, lines))
