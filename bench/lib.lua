-- bench/lib.lua: the harness shared by the workload scripts (bench/*.lua): clocks, CPU time,
-- the corpus in C memory for bare LuaJIT, and the `result` lines that bench/run reads.
-- Harness only: the user code a workload measures is in the workload script itself, and the
-- functions here never travel to dstream's workers.
--
-- A workload script runs two ways with the same user code:
--   dstream bench/X.lua dstream ARGS...   on dstream's workers
--   luajit  bench/X.lua bare ARGS...      "bare LuaJIT": one VM, no engine
local ffi = require("ffi")

ffi.cdef [[
typedef struct { long sec, usec; } bench_timeval_t;
typedef struct { bench_timeval_t utime, stime; long rest[14]; } bench_rusage_t;
typedef struct { long sec, nsec; } bench_timespec_t;
int getrusage(int who, bench_rusage_t *ru);
int clock_gettime(int clock, bench_timespec_t *ts);
void *malloc(size_t n);
int usleep(unsigned int usec);
int open(const char *path, int flags, int mode);
int close(int fd);
]]
local C = ffi.C

local M = {}

local ts, ru = ffi.new("bench_timespec_t"), ffi.new("bench_rusage_t")

-- Monotonic seconds.
function M.now()
  C.clock_gettime(1, ts)
  return tonumber(ts.sec) + tonumber(ts.nsec) / 1e9
end

-- Wall clock in microseconds (CLOCK_REALTIME, as bench/gen stamps lines).
function M.wall_us()
  C.clock_gettime(0, ts)
  return tonumber(ts.sec) * 1e6 + tonumber(ts.nsec) / 1e3
end

-- CPU seconds of the whole process: every thread (dstream's workers included).
function M.cpu()
  C.getrusage(0, ru)
  return tonumber(ru.utime.sec) + tonumber(ru.utime.usec) / 1e6
    + tonumber(ru.stime.sec) + tonumber(ru.stime.usec) / 1e6
end

-- CPU seconds of the calling thread alone (RUSAGE_THREAD): in dstream the driver's thread,
-- beside the workers', the receivers' and the Kafka consumer's, which lib.cpu() also counts.
function M.thread_cpu()
  C.getrusage(1, ru)
  return tonumber(ru.utime.sec) + tonumber(ru.utime.usec) / 1e6
    + tonumber(ru.stime.sec) + tonumber(ru.stime.usec) / 1e6
end

-- Waits until every copy of a program run side by side has reached this point, so that their
-- timed parts overlap (bench/run's "2 copies" ceiling: the same bare program run as two
-- processes at once). BENCH_TOGETHER="DIR N": each copy leaves a file in DIR and waits for N
-- of them (60 s at most). Unset, returns at once. Called just before a bare run's clock starts.
function M.start_together()
  local spec = os.getenv("BENCH_TOGETHER")
  if not spec or spec == "" then return end
  local dir, n = spec:match("^(.-)%s+(%d+)$")
  assert(dir, "BENCH_TOGETHER: expected \"DIR N\", got " .. spec)
  n = tonumber(n)
  -- Copy i takes the name DIR/i: the first free one, created exclusively (O_CREAT | O_EXCL).
  local taken = false
  for i = 1, n do
    local fd = C.open(dir .. "/" .. i, 0x41 + 0x80, 420) -- O_WRONLY | O_CREAT | O_EXCL, 0644
    if fd >= 0 then
      C.close(fd)
      taken = true
      break
    end
  end
  assert(taken, "start_together: more copies than " .. n)
  local deadline = M.now() + 60
  while M.now() < deadline do
    local fh = io.open(dir .. "/" .. n, "r")
    if fh then
      fh:close()
      return
    end
    C.usleep(1000)
  end
  error("start_together: the other copies did not come within 60 s")
end

-- Prints "result k=v ..." (keys in the given order: a list of {key, value}).
function M.result(fields)
  local out = { "result" }
  for _, kv in ipairs(fields) do
    local v = kv[2]
    if v == nil then goto skip end -- a field this run has not got (bare LuaJIT's driver_cpu)
    if type(v) == "number" and v ~= math.floor(v) then v = string.format("%.6g", v) end
    out[#out + 1] = kv[1] .. "=" .. tostring(v)
    ::skip::
  end
  print(table.concat(out, " "))
  io.stdout:flush()
end

-- The lines of `path` cut into `n` batches of consecutive lines, for queue_stream: rdds of
-- lines in C memory, as a receiver's blocks are (socket, Kafka, files), read before the clock
-- starts, as bare LuaJIT's corpus_records is. (Queued Lua lists were encoded on the driver's
-- thread at their batch, about 5 ms per batch of 13,730 lines while the workers waited: work
-- a receiver's input does not cost the driver.) Each batch is cut into `parts` partitions of
-- consecutive lines. Returns the rdds and the line count.
function M.batch_rdds(ctx, path, n, parts)
  local core, rdd_mod = require("dstream.core"), require("dstream.rdd")
  local text = M.corpus_text(path)
  local starts, pos = {}, 1 -- byte offset (0-based) where each line starts
  while pos <= #text do
    starts[#starts + 1] = pos - 1
    pos = (text:find("\n", pos, true) or #text) + 1
  end
  local size, lines = #text, #starts
  text = nil
  local per_batch = math.ceil(lines / n)
  local rdds = {}
  for i = 1, n do
    local first, last = (i - 1) * per_batch + 1, math.min(lines, i * per_batch)
    if first <= last then
      local range = { path, starts[first], starts[last + 1] or size }
      rdds[i] = rdd_mod.from_slices(ctx, assert(core.read_file_ranges({ range }, parts)))
    else
      rdds[i] = rdd_mod.empty(ctx)
    end
  end
  return rdds, lines
end

-- The lines of the file in C memory, each as a uint32 length and its bytes: the layout of
-- dstream's DS_FMT_LINES blocks. Returns the buffer and its size in bytes.
function M.corpus_records(path)
  local text = M.corpus_text(path)
  local n = #text
  -- malloc: outside the Lua heap, as dstream's blocks are, so the GC paces itself the same.
  local cap = n + 4 * math.floor(n / 16 + 16)
  local buf = ffi.cast("uint8_t *", C.malloc(cap)) -- never freed: lives for the whole run
  local off, pos = 0, 1
  while pos <= n do
    local e = text:find("\n", pos, true) or n + 1
    local len = e - pos
    if off + 4 + len > cap then
      cap = cap * 2
      local bigger = ffi.cast("uint8_t *", C.malloc(cap))
      ffi.copy(bigger, buf, off)
      buf = bigger
    end
    ffi.cast("uint32_t *", buf + off)[0] = len
    ffi.copy(buf + off + 4, ffi.cast("const char *", text) + pos - 1, len)
    off = off + 4 + len
    pos = e + 1
  end
  text = nil
  collectgarbage()
  collectgarbage()
  return buf, off
end

function M.corpus_text(path)
  local fh = assert(io.open(path, "rb"))
  local s = fh:read("*a")
  fh:close()
  return s
end

-- Calls fn(line) for every record of a buffer from corpus_records, making each a new Lua
-- string, as dstream's reader does. This is the bare-LuaJIT loop: the work per record minus
-- the engine.
local u32p = ffi.typeof("const uint32_t *")
function M.for_lines(p, n, fn)
  local off = 0
  while off < n do
    local len = ffi.cast(u32p, p + off)[0]
    fn(ffi.string(p + off + 4, len))
    off = off + 4 + len
  end
end

-- The "impl" of a result line, as bench/report.lua reads it: "luajit" for bare LuaJIT,
-- "dstream-<workers>w" otherwise.
function M.impl(mode, workers)
  if mode == "bare" then return "luajit" end
  return "dstream-" .. workers .. "w"
end

-- dstream's side of the static workloads: a manual-clock context with one partition per
-- worker, its workers up, and the corpus as ctx:text_file (loading timed apart).
-- Returns ctx, the dataset and the seconds the loading took.
-- The corpus as a static dataset whose lines are in C memory already: what is timed after it
-- is the engine's work on records, as the bare baseline's (which loads its buffer untimed).
-- ctx:text_file reads lazily, in its tasks; here the file is read whole first (load_secs), in
-- the same line format, through the file stream's range reader.
function M.static_dataset(path, workers)
  local dstream = require("dstream")
  local core = require("dstream.core")
  local ctx = dstream.context { workers = workers, partitions = workers, clock = "manual" }
  ctx:parallelize({ 1 }):count() -- the workers are up
  local t = M.now()
  local fh = assert(io.open(path, "rb"))
  local size = fh:seek("end")
  fh:close()
  local parts = assert(core.read_file_ranges({ { path, 0, size } }, workers))
  local data = require("dstream.rdd").from_slices(ctx, parts)
  return ctx, data, M.now() - t
end

-- Bare LuaJIT's per-batch word counts, as dstream's batches of bench/window.lua and
-- bench/topk.lua: the records of a buffer from corpus_records cut into `nbatches` batches of
-- consecutive lines; each line's words go through the user's split/pair/add into the batch's
-- table, and close(counts) ends each batch (and, with pad, each batch past the corpus's end,
-- empty). Returns the number of lines; only the counting is meant to be timed, so the caller
-- starts its clocks in `start()`, called once the lines are counted.
function M.word_batches(p, n, nbatches, split, pair, add, close, pad, start)
  local total = 0
  M.for_lines(p, n, function() total = total + 1 end)
  local per_batch = math.ceil(total / nbatches)
  start()
  local counts, in_batch, done, lines = {}, 0, 0, 0
  local function close_batch()
    close(counts)
    counts, in_batch, done = {}, 0, done + 1
  end
  M.for_lines(p, n, function(line)
    lines = lines + 1
    for w in split(line) do
      local k, v = pair(w)
      local old = counts[k]
      if old == nil then counts[k] = v else counts[k] = add(old, v) end
    end
    in_batch = in_batch + 1
    if in_batch == per_batch then close_batch() end
  end)
  if in_batch > 0 then close_batch() end
  while pad and done < nbatches do close_batch() end
  return lines
end

-- The size of a file in bytes.
function M.file_size(path)
  local fh = assert(io.open(path, "rb"))
  local size = fh:seek("end")
  fh:close()
  return size
end

-- Peak resident set size of this process so far, in KiB (from /proc: VmHWM).
function M.peak_rss_kb()
  local fh = io.open("/proc/self/status", "r")
  if not fh then return 0 end
  local s = fh:read("*a")
  fh:close()
  return tonumber(s:match("VmHWM:%s*(%d+)")) or 0
end

-- Adds the repository's lua/ and stdlib/ to package.path (bare LuaJIT finds dstream.text).
function M.use_stdlib()
  local root = (arg and arg[0] or "bench/x.lua"):match("^(.*)/bench/[^/]*$") or "."
  package.path = root .. "/stdlib/?.lua;" .. package.path
end

return M
