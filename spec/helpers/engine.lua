-- Shared helpers for the dstream specs: run a queue_stream pipeline on a manual-clock context,
-- plain-Lua reference implementations that compute expectations without the engine, seeded
-- data generators, and small file-system utilities for output specs.
--
-- Load it from a spec with:
--   package.path = "spec/helpers/?.lua;" .. package.path
--   local H = require("engine")

local H = {}

local unpack = unpack or table.unpack

---------------------------------------------------------------------------------------------
-- Engine access
---------------------------------------------------------------------------------------------

function H.dstream()
  return require("dstream")
end

-- Whether this interpreter is the sanitizer build (CI runs the specs under both): some
-- multi-process runs add no coverage of their own there and run on the release build only.
function H.sanitizer_build()
  local f = io.open("/proc/self/cmdline", "rb")
  local cmdline = f and f:read("*a") or ""
  if f then f:close() end
  return cmdline:find("build%-asan") ~= nil
end

-- Sleeps `ms` milliseconds without a Lua loop (poll(2) with no descriptors).
local ffi = require("ffi")
pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")
function H.sleep_ms(ms) ffi.C.poll(nil, 0, ms) end

-- Polls cond() every `pause` ms (default 50) for up to `seconds` (default 20); true when it held.
function H.wait_for(cond, seconds, pause)
  local deadline = os.time() + (seconds or 20)
  while os.time() <= deadline do
    if cond() then return true end
    H.sleep_ms(pause or 50)
  end
  return cond()
end

-- The matrix every operator spec runs over. Each entry is a context configuration plus a
-- human-readable name for the describe block.
function H.configs(workers_list, partitions_list)
  local out = {}
  for _, w in ipairs(workers_list or { 1, 4 }) do
    for _, p in ipairs(partitions_list or { 1, 3 }) do
      out[#out + 1] = {
        workers = w, partitions = p,
        name = ("workers=%d partitions=%d"):format(w, p),
      }
    end
  end
  return out
end

-- A manual-clock context from a config table (workers, partitions, batch, worker_memory).
function H.context(cfg)
  cfg = cfg or {}
  local opts = {
    batch = cfg.batch or "1s",
    clock = "manual",
    workers = cfg.workers,
    partitions = cfg.partitions,
    worker_memory = cfg.worker_memory,
  }
  return H.dstream().context(opts)
end

-- Runs fn(ctx) and always stops the context afterwards; re-raises fn's error unchanged.
function H.with_context(cfg, fn)
  local ctx = H.context(cfg)
  local ok, res = pcall(fn, ctx)
  pcall(ctx.stop, ctx)
  if not ok then error(res, 0) end
  return res
end

-- Builds queue_stream(input, qopts) on a fresh manual-clock context, lets build(source, ctx)
-- derive the stream under test (nil: the source itself), collects every batch through
-- foreach_rdd(rdd:collect()) and runs `batches` batches (default #input).
-- Returns results (one collected array per batch; pairs appear as {k, v}) and batch times.
function H.run(cfg, input, build, opts)
  opts = opts or {}
  return unpack(H.with_context(cfg, function(ctx)
    local src
    if opts.queue ~= nil then
      src = ctx:queue_stream(H.deep_copy(input), opts.queue)
    else
      src = ctx:queue_stream(H.deep_copy(input))
    end
    local out = src
    if build then out = build(src, ctx) or src end
    local results, times = {}, {}
    out:foreach_rdd(function(rdd, time)
      results[#results + 1] = rdd:collect()
      times[#times + 1] = time
    end)
    ctx:start()
    ctx:advance(opts.batches or #input)
    return { results, times }
  end))
end

-- Expected batch times for n batches of batch_ms milliseconds.
function H.times(n, batch_ms)
  local t = {}
  for i = 1, n do t[i] = i * (batch_ms or 1000) end
  return t
end

---------------------------------------------------------------------------------------------
-- Plain values
---------------------------------------------------------------------------------------------

function H.deep_copy(v, seen)
  if type(v) ~= "table" then return v end
  seen = seen or {}
  if seen[v] then return seen[v] end
  local t = {}
  seen[v] = t
  for k, x in pairs(v) do t[H.deep_copy(k, seen)] = H.deep_copy(x, seen) end
  return t
end

-- A deterministic text form of a value (sorted keys), used as a sort key for multisets.
function H.repr(v)
  local tv = type(v)
  if tv == "number" then
    if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return ("%d"):format(v) end
    return ("%.17g"):format(v)
  elseif tv == "string" then
    return ("%q"):format(v)
  elseif tv == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return H.repr(a) < H.repr(b) end)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = "[" .. H.repr(k) .. "]=" .. H.repr(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return tostring(v)
end

-- A sorted copy of a list (any records, including {k, v} pairs and tables).
-- Numbers sort numerically and before other values; other values sort by H.repr.
local TYPE_RANK = { number = 1, boolean = 2, string = 3, table = 4 }
function H.sorted(list)
  local keyed = {}
  for i, v in ipairs(list) do
    keyed[i] = { TYPE_RANK[type(v)] or 5, type(v) == "number" and v or H.repr(v), v }
  end
  table.sort(keyed, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  local out = {}
  for i, kv in ipairs(keyed) do out[i] = kv[3] end
  return out
end

-- A map from a list of {k, v} pairs.
function H.to_map(pair_list)
  local m = {}
  for _, kv in ipairs(pair_list) do m[kv[1]] = kv[2] end
  return m
end

-- Number of entries of a table with any keys.
function H.size(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- Concatenates arrays.
function H.concat(lists)
  local out = {}
  for _, l in ipairs(lists) do
    for _, v in ipairs(l) do out[#out + 1] = v end
  end
  return out
end

function H.range(from, to)
  local t = {}
  for i = from, to do t[#t + 1] = i end
  return t
end

---------------------------------------------------------------------------------------------
-- Reference implementations (never use the engine). Records of a pair stream are {k, v}.
---------------------------------------------------------------------------------------------

local R = {}
H.ref = R

local function pack(...) return { n = select("#", ...), ... } end

local function args_of(rec, pairs_in)
  if pairs_in then return rec[1], rec[2] end
  return rec
end

-- f returns one value (record) or two (pair, stored as {k, v}).
local function emit(out, n, a, b)
  if n >= 2 then out[#out + 1] = { a, b } else out[#out + 1] = a end
end

function R.map(list, f, pairs_in)
  local out = {}
  for _, rec in ipairs(list) do
    local r = pack(f(args_of(rec, pairs_in)))
    emit(out, r.n, r[1], r[2])
  end
  return out
end

function R.filter(list, f, pairs_in)
  local out = {}
  for _, rec in ipairs(list) do
    if f(args_of(rec, pairs_in)) then out[#out + 1] = rec end
  end
  return out
end

-- f returns an array, or a generic-for iterator triple; an iterator yielding two values
-- yields pairs.
function R.flat_map(list, f, pairs_in)
  local out = {}
  for _, rec in ipairs(list) do
    local it, s, c = f(args_of(rec, pairs_in))
    if type(it) == "table" then
      for _, v in ipairs(it) do out[#out + 1] = v end
    elseif it ~= nil then
      for a, b in it, s, c do
        if b ~= nil then out[#out + 1] = { a, b } else out[#out + 1] = a end
      end
    end
  end
  return out
end

function R.count(list) return #list end

function R.reduce(list, f)
  if #list == 0 then return nil end
  local acc = list[1]
  for i = 2, #list do acc = f(acc, list[i]) end
  return acc
end

-- value -> count
function R.count_by_value(list)
  local m = {}
  for _, v in ipairs(list) do m[v] = (m[v] or 0) + 1 end
  return m
end

-- list of {k, v} -> map k -> reduced v
function R.reduce_by_key(pair_list, f)
  local m = {}
  for _, kv in ipairs(pair_list) do
    local k, v = kv[1], kv[2]
    if m[k] == nil then m[k] = v else m[k] = f(m[k], v) end
  end
  return m
end

function R.union(a, b)
  return H.concat({ a, b })
end

function R.take(list, n)
  local out = {}
  for i = 1, math.min(n, #list) do out[i] = list[i] end
  return out
end

-- Applies a per-list reference to every batch of a list of batches.
function R.per_batch(batches, fn, ...)
  local out = {}
  for i, b in ipairs(batches) do out[i] = fn(b, ...) end
  return out
end

---------------------------------------------------------------------------------------------
-- Seeded data
---------------------------------------------------------------------------------------------

local VOCAB = {
  "apple", "banana", "cherry", "date", "elder", "fig", "grape", "honeydew",
  "kiwi", "lemon", "mango", "nectarine", "olive", "papaya", "quince", "rhubarb",
}
H.VOCAB = VOCAB

-- n integers in [lo, hi], seeded.
function H.random_ints(n, lo, hi, seed)
  math.randomseed(seed or 42)
  local t = {}
  for i = 1, n do t[i] = math.random(lo or -1000, hi or 1000) end
  return t
end

-- n words from VOCAB, seeded.
function H.random_words(n, seed)
  math.randomseed(seed or 42)
  local t = {}
  for i = 1, n do t[i] = VOCAB[math.random(#VOCAB)] end
  return t
end

-- n lines of 0..8 words separated by runs of 1..3 spaces (some leading/trailing), seeded.
function H.random_lines(n, seed)
  math.randomseed(seed or 42)
  local t = {}
  for i = 1, n do
    local parts = {}
    if math.random(4) == 1 then parts[#parts + 1] = " " end
    for w = 1, math.random(0, 8) do
      if w > 1 then parts[#parts + 1] = (" "):rep(math.random(3)) end
      parts[#parts + 1] = VOCAB[math.random(#VOCAB)]
    end
    if math.random(4) == 1 then parts[#parts + 1] = "  " end
    t[i] = table.concat(parts)
  end
  return t
end

-- n {k, v} pairs with keys from VOCAB and integer values, seeded.
function H.random_pairs(n, seed)
  math.randomseed(seed or 42)
  local t = {}
  for i = 1, n do t[i] = { VOCAB[math.random(#VOCAB)], math.random(-50, 50) } end
  return t
end

---------------------------------------------------------------------------------------------
-- Files and processes
---------------------------------------------------------------------------------------------

function H.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- A fresh empty directory under the system temp dir.
function H.tmpdir()
  local name = os.tmpname()
  os.remove(name)
  H.sh("mkdir -p " .. H.quote(name))
  return name
end

-- A maker of temporary directories that are removed after each test of the calling spec:
--   local tmp = H.scratch_dirs(after_each)
function H.scratch_dirs(after_each)
  local dirs = {}
  after_each(function()
    for _, d in ipairs(dirs) do H.rmdir(d) end
    dirs = {}
  end)
  return function()
    local d = H.tmpdir()
    dirs[#dirs + 1] = d
    return d
  end
end

-- Runs n batches of a checkpointed job and stops it gracefully; returns out. The context is
-- dstream.get_or_create(dir, make) (restored when dir holds a checkpoint); build(ctx, out)
-- adds the streams (again on a restart: a script builds its streams each time). The context
-- is stopped even when something fails.
function H.run_checkpointed(dir, n, make, build)
  local ctx = require("dstream").get_or_create(dir, make)
  local out = {}
  local ok, err = pcall(function()
    build(ctx, out)
    ctx:start()
    ctx:advance(n)
    ctx:stop { graceful = true }
  end)
  if not ok then
    pcall(ctx.stop, ctx)
    error(err, 0)
  end
  return out
end

-- The checkpoint files of a directory (checkpoint-<generation>, no temp files), oldest first,
-- as paths.
function H.checkpoint_files(dir)
  local out = {}
  for _, name in ipairs(H.listdir(dir)) do
    if name:match("^checkpoint%-%d+$") then out[#out + 1] = dir .. "/" .. name end
  end
  return out
end

-- Runs a shell command; true when it exits with status 0 (Lua 5.1 and 5.2 os.execute forms).
function H.sh(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and (c == nil or c == 0)
end

function H.rmdir(path)
  if path and path:match("^/tmp/") then H.sh("rm -rf " .. H.quote(path)) end
end

function H.exists(path)
  return H.sh("test -e " .. H.quote(path))
end

function H.is_dir(path)
  return H.sh("test -d " .. H.quote(path))
end

-- Sorted names inside a directory (no . and ..).
function H.listdir(path)
  local p = io.popen("ls -1A " .. H.quote(path) .. " 2>/dev/null")
  local names = {}
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  table.sort(names)
  return names
end

function H.read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

function H.write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Lines of a string (without terminators); a trailing newline does not add an empty line.
function H.lines(s)
  local out = {}
  if s == nil or s == "" then return out end
  if s:sub(-1) ~= "\n" then s = s .. "\n" end
  for line in s:gmatch("(.-)\n") do out[#out + 1] = line end
  return out
end

-- Names of the part files of a batch output directory, in order (part-00000, ...).
function H.part_files(dir)
  local parts = {}
  for _, name in ipairs(H.listdir(dir)) do
    if name:match("^part%-%d%d%d%d%d$") then parts[#parts + 1] = name end
  end
  return parts
end

-- Concatenated lines of all part files of a batch output directory.
function H.read_text_parts(dir)
  local out = {}
  for _, name in ipairs(H.part_files(dir)) do
    for _, line in ipairs(H.lines(H.read_file(dir .. "/" .. name))) do out[#out + 1] = line end
  end
  return out
end

-- Decoded string.buffer values of all part files of a batch output directory, in order.
function H.read_object_parts(dir)
  local sbuf = require("string.buffer")
  local out = {}
  for _, name in ipairs(H.part_files(dir)) do
    local buf = sbuf.new():set(H.read_file(dir .. "/" .. name))
    while #buf > 0 do out[#out + 1] = buf:decode() end
  end
  return out
end

function H.json_decode(s)
  local ok, cjson = pcall(require, "cjson")
  if ok then return cjson.decode(s) end
  return require("dkjson").decode(s)
end

-- The interpreter running the specs (busted --lua=build/dstream puts it in arg[-1]).
function H.interpreter()
  local env = os.getenv("DSTREAM_BIN")
  if env and env ~= "" then return env end
  if H.exists("build/dstream") then return "build/dstream" end
  local a = rawget(_G, "arg")
  if a and a[-1] then return a[-1] end
  return "build/dstream"
end

-- Runs a Lua script with the dstream interpreter; returns its stdout+stderr.
function H.run_script(code)
  local path = os.tmpname()
  H.write_file(path, code)
  local p = io.popen(H.quote(H.interpreter()) .. " " .. H.quote(path) .. " 2>&1")
  local out = p:read("*a")
  p:close()
  os.remove(path)
  return out
end

-- Parses the output of print(): for the header line "Time: <time_ms> ms" returns the record
-- lines printed under it (nil if the header is missing).
function H.printed_records(output, time_ms)
  local lines = H.lines(output)
  local header = "Time: " .. tostring(time_ms) .. " ms"
  for i, line in ipairs(lines) do
    if line:match("^%s*(.-)%s*$") == header then
      local j = i + 1
      while lines[j] and lines[j]:match("^%-+$") do j = j + 1 end
      local recs = {}
      while lines[j] and lines[j] ~= "" and not lines[j]:match("^%-+$")
        and not lines[j]:match("^Time: ") and not lines[j]:match("^SCRIPT%-") do
        recs[#recs + 1] = lines[j]
        j = j + 1
      end
      return recs
    end
  end
  return nil
end

return H
