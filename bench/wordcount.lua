-- bench/wordcount.lua: word count over a generated corpus as a static dataset, and the same
-- user code in bare LuaJIT (no engine) on the same lines. Prints one table; never fails.
--   dstream bench/wordcount.lua [LINES] [WORKERS...]
local dstream = require("dstream")
local core = require("dstream.core")

local nlines = tonumber(arg[1]) or 500000
local worker_counts = {}
for i = 2, #arg do worker_counts[#worker_counts + 1] = tonumber(arg[i]) end
if #worker_counts == 0 then worker_counts = { 1, 2 } end

-- A deterministic Zipf-like corpus: 10 words a line over a 5000-word vocabulary.
local vocab = {}
for i = 1, 5000 do vocab[i] = "w" .. i end
local seed = 12345
local function rnd()
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
end
local lines, words = {}, 0
for i = 1, nlines do
  local t = {}
  for j = 1, 10 do t[j] = vocab[math.floor(5000 ^ rnd())] end
  lines[i] = table.concat(t, " ")
  words = words + 10
end

local function split(line) return line:gmatch("%S+") end
local function add(a, b) return a + b end

local rows = {}
local function row(name, secs)
  rows[#rows + 1] = string.format("%-28s %8.3f s %12.0f words/s", name, secs, words / secs)
end

do -- bare LuaJIT: the same user code, one VM, no engine
  local t0 = core.hrtime_ms()
  local counts = {}
  for i = 1, #lines do
    for w in split(lines[i]) do counts[w] = add(counts[w] or 0, 1) end
  end
  row("bare luajit (gmatch)", (core.hrtime_ms() - t0) / 1000)
end

for _, w in ipairs(worker_counts) do
  local ctx = dstream.context { workers = w, partitions = w * 2, clock = "manual" }
  local data = ctx:parallelize(lines)
  data:count() -- warm the workers up
  local t0 = core.hrtime_ms()
  local out = data:flat_map(split):map(function(x) return x, 1 end):reduce_by_key(add):collect()
  local secs = (core.hrtime_ms() - t0) / 1000
  assert(#out > 0)
  row(string.format("dstream %d worker(s) (gmatch)", w), secs)
  ctx:stop()
end

print(string.format("word count, %d lines, %d words", nlines, words))
for _, r in ipairs(rows) do print(r) end
