-- examples/file_stream.lua: text_file_stream on a directory that the job itself feeds.
--
--   dstream examples/file_stream.lua
--
-- The script makes a temporary directory with two files in it, and starts a stream on it with
-- new_files_only = false, so those two are read into the first batch. Each batch then moves
-- one more file in from foreach_rdd: written in a staging directory first, then renamed into
-- the watched one, so the stream never sees half a file. A file whose name ends in ".tmp" sits
-- in the directory the whole time and is never read. When every file has been read, the job
-- stops itself; it prints the line count of each batch and the total, then cleans up.
local dstream = require("dstream")

local base = os.tmpname() -- a fresh name; the file it creates is replaced by our directories
os.remove(base)
local watched, staging = base .. "/in", base .. "/staging"
assert(os.execute("mkdir -p '" .. watched .. "' '" .. staging .. "'") == 0)

local function write(path, nlines)
  local fh = assert(io.open(path, "w"))
  for i = 1, nlines do fh:write(("line %d of %s\n"):format(i, path:match("[^/]+$"))) end
  fh:close()
end

write(watched .. "/a.log", 3)          -- already there at start: read because of
write(watched .. "/b.log", 2)          -- new_files_only = false
write(watched .. "/upload.tmp", 100)   -- ignored: ".tmp" marks an unfinished file
local later = { { "c.log", 4 }, { "d.log", 1 }, { "e.log", 5 } } -- moved in one per batch
local expected_total = 3 + 2 + 4 + 1 + 5

local ctx = dstream.context { batch = "250ms", workers = 2 }
local total, batches, first_time = 0, 0, nil

ctx:text_file_stream(watched, { new_files_only = false })
  :filter(function(line) return line ~= "" end)
  :count()
  :foreach_rdd(function(rdd, time)
    local n = rdd:first()
    first_time = first_time or time
    batches = batches + 1
    total = total + n
    local moved = ""
    local nextfile = table.remove(later, 1)
    if nextfile then
      local name, nlines = nextfile[1], nextfile[2]
      write(staging .. "/" .. name, nlines)
      assert(os.rename(staging .. "/" .. name, watched .. "/" .. name)) -- an atomic move
      moved = "; moved " .. name .. " in"
    end
    print(("batch %d (+%d ms): %d lines%s"):format(batches, time - first_time, n, moved))
    if total >= expected_total then ctx:stop { graceful = true } end
  end)

ctx:start()
local stopped = ctx:await_termination(10) -- false if the files were not all read in 10 s
ctx:stop()
os.execute("rm -rf '" .. base .. "'")
print(("total: %d lines in %d batches (expected %d)%s"):format(total, batches, expected_total,
  stopped and "" or "; timed out"))
