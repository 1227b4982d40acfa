-- bench/report.lua: prints bench/run's table from its raw results (bench/out/results.txt):
-- one row per workload and implementation (the best of its runs), the ratios to the baselines
-- measured in the same run, the targets of issue 9, and (with --traces) the trace check.
--   luajit bench/report.lua bench/out/results.txt
local path = arg[1] or "bench/out/results.txt"

local function parse(line)
  local kind, rest = line:match("^(%w+)%s+(.*)$")
  if not kind then return nil end
  local t = { kind = kind }
  local i = 1
  while i <= #rest do
    local k, v, j = rest:match('^([%w_]+)="([^"]*)"()', i)
    if not k then k, v, j = rest:match("^([%w_]+)=(%S*)()", i) end
    if not k then
      j = (rest:find("%s", i) or #rest) + 1
    else
      t[k] = tonumber(v) or v
    end
    i = j
    while rest:sub(i, i) == " " do i = i + 1 end
  end
  return t
end

local machine, groups, failed, traces_file = {}, {}, {}, nil
for line in io.lines(path) do
  local t = parse(line)
  if t and t.kind == "machine" then
    for k, v in pairs(t) do if k ~= "kind" then machine[k] = v end end
  elseif t and t.kind == "result" then
    local key = table.concat({ t.workload, t.impl, t.variant or "", t.batch or "" }, "|")
    local g = groups[key]
    if not g then
      groups[key] = t
      t.runs = 1
    else
      g.runs = g.runs + 1
      g.rss_kb = math.max(g.rss_kb or 0, t.rss_kb or 0)
      if t.secs < g.secs then -- keep the best run's figures, the worst run's memory
        local rss, runs = g.rss_kb, g.runs
        for k in pairs(g) do g[k] = nil end
        for k, v in pairs(t) do g[k] = v end
        g.rss_kb, g.runs = rss, runs
      end
    end
  elseif t and t.kind == "failed" then
    failed[#failed + 1] = t.label
  elseif t and t.kind == "traces" then
    traces_file = t.file
  end
end

local function get(workload, impl, variant, batch)
  return groups[table.concat({ workload, impl, variant or "", batch or "" }, "|")]
end

local function rate(r) return r and r.records / r.secs end

local function si(x)
  if not x then return "-" end
  if x >= 1e6 then return string.format("%.2f M", x / 1e6) end
  if x >= 1e3 then return string.format("%.1f K", x / 1e3) end
  return string.format("%.0f", x)
end

local function ratio(base, r) -- how many times the baseline's time this row takes
  if not base or not r then return "-" end
  return string.format("%.2fx", rate(base) / rate(r))
end

local SPARK_PER_CORE = 62500

local fmt = "%-34s %-16s %10s %10s %10s %8s %8s %8s %7s %7s %7s %6s %6s %6s"
local function header()
  print(string.format(fmt, "workload", "run on", "records/s", "words/s", "per core", "p50 ms",
    "p99 ms", "RSS MB", "vs C", "vs LJ", "2w/1w", "2c/1", "of 2c", "drv %"))
  print(string.rep("-", 159))
end

-- A 2-worker row's speed over the same workload's 1-worker row ("2w/1w"), when both ran.
local function scaling_of(r)
  local impl1 = r.impl and r.impl:match("^(.*%-)2w$")
  local r1 = impl1 and get(r.workload, impl1 .. "1w", r.variant, r.batch)
  return r1 and rate(r) / rate(r1)
end
local function scaling(r)
  local x = scaling_of(r)
  return x and string.format("%.2fx", x) or "-"
end

-- The machine's ceiling for a workload's scaling ("2c/1"): two copies of a program that share
-- nothing, run at the same time (bench/run's `ceiling`), over one copy alone. The bare LuaJIT
-- program of the workload; the text_file and socket word counts take text.words' (the same
-- work per word; the socket generator's own CPU is not in it); Kafka two C consumers with half
-- the partitions each, against one with all, the broker shared.
local CEILING_OF = {
  text_file = { "wordcount", "luajit", "words" },
  socket_wordcount = { "wordcount", "luajit", "words" },
  kafka_wordcount = { "kafka_wordcount", "c" },
}
local function ceiling_of(r)
  if not (r.impl and r.impl:match("%-2w$")) or r.variant == "large" then return nil end
  local c = CEILING_OF[r.workload] or { r.workload, "luajit", r.variant }
  local one, two = get(c[1], c[2], c[3]), get(c[1], c[2] .. "-2copies", c[3])
  return one and two and rate(two) / rate(one)
end
local function ceiling(r)
  local x = ceiling_of(r)
  return x and string.format("%.2fx", x) or "-"
end
-- dstream's 2w/1w as a share of that ceiling ("of 2c").
local function of_ceiling(r)
  local s, c = scaling_of(r), ceiling_of(r)
  return s and c and string.format("%.0f%%", 100 * s / c) or "-"
end

-- The driver thread's share of the process's CPU time while the row was timed ("drv %"):
-- what the workers' cores wait on when it is large.
local function driver_share(r)
  if not (r.driver_cpu and r.cpu and r.cpu > 0) then return "-" end
  return string.format("%.0f%%", 100 * r.driver_cpu / r.cpu)
end

local function row(label, r, c_base, lj_base, opts)
  opts = opts or {}
  if not r then
    print(string.format(fmt, label, opts.impl or "?", "(no result)", "", "", "", "", "", "", "", "", "", "", ""))
    return
  end
  local words = r.words and r.words / r.secs or nil
  local per_core = opts.per_core or (r.cpu and r.cpu > 0 and r.records / r.cpu or nil)
  print(string.format(fmt, label, opts.impl_name or r.impl,
    si(opts.rate or rate(r)), si(words), si(per_core),
    r.p50_ms and string.format("%.1f", r.p50_ms) or "-",
    r.p99_ms and string.format("%.1f", r.p99_ms) or "-",
    r.rss_kb and string.format("%.0f", r.rss_kb / 1024) or "-",
    c_base and ratio(c_base, r) or "-", lj_base and ratio(lj_base, r) or "-", scaling(r), ceiling(r),
    of_ceiling(r), driver_share(r)))
end

local checks = {}
local function check(what, a, b, field)
  if a and b and a[field] ~= b[field] then
    checks[#checks + 1] = string.format("MISMATCH %s: %s %s=%s, %s %s=%s", what, a.impl,
      field, tostring(a[field]), b.impl, field, tostring(b[field]))
  end
end

print(string.format("dstream benchmarks: %s cores (%s), %s, %s", machine.cores or "?",
  machine.cpu or "?", machine.luajit or "?", machine.dstream or "?"))
print(string.format("corpus: %s words in %s lines of ~100 bytes (Zipf, 200,000-word vocabulary); load average %s before, %s after",
  machine.words or "?", machine.lines or "?", machine.load_before or "?", machine.load_after or "?"))
print("records/s and words/s: the best of the runs; per core: records per CPU-second of the process;")
print("vs C / vs LJ: the row's time over the C baseline's / bare LuaJIT's (same user code), 1 core each")
print()
header()

-- Word count, static
local c_wc = get("wordcount", "c")
row("word count, static", c_wc, nil, nil, { impl_name = "C baseline" })
for _, v in ipairs({ "gmatch", "words" }) do
  local lj = get("wordcount", "luajit", v)
  local label = "word count, static (" .. (v == "words" and "text.words" or "gmatch") .. ")"
  row(label, lj, c_wc, nil, { impl_name = "bare LuaJIT" })
  for _, w in ipairs({ 1, 2 }) do
    local r = get("wordcount", "dstream-" .. w .. "w", v)
    row(label, r, c_wc, lj, { impl_name = "dstream " .. w .. " wkr" })
    check("word count", c_wc, r, "distinct")
    check("word count", c_wc, r, "words")
  end
  check("word count", c_wc, lj, "distinct")
end
for _, w in ipairs({ 1, 2 }) do -- no load before the clock: the tasks read the file
  local r = get("text_file", "dstream-" .. w .. "w")
  row("word count, text_file (lazy read)", r, c_wc, get("wordcount", "luajit", "words"),
    { impl_name = "dstream " .. w .. " wkr" })
  check("text_file word count", c_wc, r, "words")
end
for _, w in ipairs({ 1, 2 }) do
  local r = get("socket_wordcount", "dstream-" .. w .. "w")
  row("word count, socket (text.words)", r, c_wc, get("wordcount", "luajit", "words"),
    { impl_name = "dstream " .. w .. " wkr" })
  check("socket word count", c_wc, r, "words")
end
print()

local c_kafka = get("kafka_wordcount", "c")
if c_kafka then
  row("word count, Kafka (text.words)", c_kafka, nil, nil, { impl_name = "C baseline" })
  for _, w in ipairs({ 1, 2 }) do
    local r = get("kafka_wordcount", "dstream-" .. w .. "w")
    row("word count, Kafka (text.words)", r, c_kafka, nil, { impl_name = "dstream " .. w .. " wkr" })
    check("kafka word count", c_kafka, r, "words")
  end
  print("  (the workloads' corpus, one message per line, in 24 partitions of the embedded broker)")
end
print()

-- Grep
local c_grep, lj_grep = get("grep", "c"), get("grep", "luajit")
row("grep (lines containing \"zyx\")", c_grep, nil, nil, { impl_name = "C baseline" })
row("grep (lines containing \"zyx\")", lj_grep, c_grep, nil, { impl_name = "bare LuaJIT" })
for _, w in ipairs({ 1, 2 }) do
  local r = get("grep", "dstream-" .. w .. "w")
  row("grep (lines containing \"zyx\")", r, c_grep, lj_grep, { impl_name = "dstream " .. w .. " wkr" })
  check("grep", c_grep, r, "matched")
end
print()

-- Databases: to_sql's rows per second (with the exactly-once markers) beside psql doing the same
-- writes (bench/db.lua): \copy of the rows, and per batch \copy + INSERT ... ON CONFLICT; "vs C"
-- is the row's time over psql's.
local copy = get("db_append", "psql-copy")
if copy then row("db: psql \\copy (baseline)", copy, nil, nil, { impl_name = "psql" }) end
local psql_upsert = get("db_upsert", "psql-upsert")
if psql_upsert then row("db: psql upsert (baseline)", psql_upsert, nil, nil, { impl_name = "psql" }) end
for _, m in ipairs({ "append", "upsert" }) do
  local base = m == "append" and copy or psql_upsert
  for _, impl in ipairs({ "postgres-1w", "postgres-2w", "sqlite-1w" }) do
    local r = get("db_" .. m, impl)
    if r then row("db: to_sql " .. m, r, impl:match("^postgres") and base or nil, nil) end
  end
end

-- SQL against the same job written with operators (bench/sql.lua, over the cached words):
-- "vs ops" is the SQL row's time over the operators row's (issue 20's target: <= 1.2x).
for _, job in ipairs({ { "sql_wordcount", "SQL word count (GROUP BY)" }, { "sql_filter_project", "SQL filter+projection" } }) do
  for _, w in ipairs({ 1, 2 }) do
    local ops, sql = get(job[1], "operators-" .. w .. "w"), get(job[1], "sql-" .. w .. "w")
    row(job[2], ops, nil, nil, { impl_name = "operators " .. w .. " wkr" })
    row(job[2], sql, nil, nil, { impl_name = "SQL " .. w .. " wkr" })
    if ops and sql then
      print(string.format("  %s, %d wkr: SQL / operators time %.2fx (target <= 1.2x)", job[2], w, sql.secs / ops.secs))
    end
    check(job[1], ops, sql, "rows")
  end
end
print()

-- Streaming ML and sketches (bench/ml.lua): k-means training points per second (10 dims,
-- k = 10; "vs LJ" against a plain-Lua k-means over the same points in memory) and
-- approx_count_distinct over the corpus's words (against an exact count in a Lua table).
local km_lj = get("kmeans", "luajit")
row("k-means training (10 dims, k = 10)", km_lj, nil, nil, { impl_name = "plain Lua" })
for _, w in ipairs({ 1, 2 }) do
  row("k-means training (10 dims, k = 10)", get("kmeans", "dstream-" .. w .. "w"), nil, km_lj, { impl_name = "dstream " .. w .. " wkr" })
end
local exact = get("hll", "luajit-exact")
row("distinct: exact (Lua table)", exact, nil, nil, { impl_name = "plain Lua" })
row("distinct: hll (rel_sd 0.01)", get("hll", "luajit"), nil, exact, { impl_name = "bare LuaJIT" })
for _, w in ipairs({ 1, 2 }) do
  row("distinct: approx_count_distinct", get("hll", "dstream-" .. w .. "w"), nil, exact, { impl_name = "dstream " .. w .. " wkr" })
end
print()

-- Windows, top-K, state
local sections = {
  { "window", "windowed word count (30 s / 1 s)", "checksum" },
  { "topk", "top-10 words per batch", "checksum" },
  { "state", "running counts (update_state_by_key)", "sum" },
}
for _, s in ipairs(sections) do
  local c, lj = get(s[1], "c"), get(s[1], "luajit")
  local label = s[2]
  if s[1] == "state" and machine.keys then
    label = string.format("running counts, %s keys", (si(machine.keys):gsub("%.0 ", ""):gsub(" ", "")))
  end
  row(label, c, nil, nil, { impl_name = "C baseline" })
  row(label, lj, c, nil, { impl_name = "bare LuaJIT" })
  check(s[2], c, lj, s[3])
  for _, w in ipairs({ 1, 2 }) do
    local r = get(s[1], "dstream-" .. w .. "w")
    row(label, r, c, lj, { impl_name = "dstream " .. w .. " wkr" })
    check(s[2], c, r, s[3])
  end
  if s[1] == "window" then
    print(string.format(fmt, "  reference: Spark Streaming sliding", "published", "-", "-",
      si(SPARK_PER_CORE), "-", "-", "-", "-", "-", "-", "-", "-", "-"))
    print("    word count, 100-byte records, 1-2 s latency (Zaharia et al., SOSP 2013)")
  end
end
print()

-- Latency
for _, b in ipairs({ "10ms", "100ms", "1s" }) do
  local r = get("latency", "dstream-2w", nil, b)
  if r then r.records_shown = r.records end
  row("latency, " .. b .. " batches, socket", r, nil, nil,
    { impl_name = "dstream 2 wkr", rate = r and r.rate })
end

-- Memory of keyed state
print()
for _, impl in ipairs({ "c", "luajit", "dstream-1w", "dstream-2w" }) do
  local r = get("state", impl)
  if r and r.bytes_per_key then
    print(string.format("state memory, %-12s %7.1f bytes per key (%5.1f of them the key's own), %6.1f beyond the key",
      impl == "c" and "C baseline" or impl == "luajit" and "bare LuaJIT" or impl .. ":", r.bytes_per_key,
      r.key_bytes or 0, r.bytes_per_key - (r.key_bytes or 0)))
  end
end

-- Memory as the work grows (issue 23): the peak RSS of the same job on a larger input. A static
-- word count over a file read by its tasks should stay flat (blocks in flight, a vocabulary's
-- worth of counts); running counts grow with the keys, by their bytes per key.
local small_tf, large_tf = get("text_file", "dstream-2w"), get("text_file", "dstream-2w", "large")
local small_st, large_st = get("state", "dstream-1w"), get("state", "dstream-1w", "large")
if large_tf or large_st then
  print()
  print("memory as the work grows                          input           peak RSS MB   growth")
  local function mem(label, what, r, base, growth)
    if not r then return end
    print(string.format("  %-48s %-15s %11.0f   %s", label, what, (r.rss_kb or 0) / 1024,
      base and growth(r, base) or ""))
  end
  local function mb(r) return string.format("%.0f MB", (r.bytes or 0) / 1e6) end
  local function flat(r, base)
    return string.format("%.2fx the RSS for %.1fx the input (flat expected)",
      (r.rss_kb or 0) / math.max(base.rss_kb or 1, 1), (r.bytes or 0) / math.max(base.bytes or 1, 1))
  end
  local function keys(r) return (si(r.keys):gsub("%.0+ ", " ")) .. " keys" end
  local function linear(r, base)
    return string.format("%.0f bytes of RSS per added key; heap %.1f B/key beyond the key",
      ((r.rss_kb or 0) - (base.rss_kb or 0)) * 1024 / math.max(r.keys - base.keys, 1),
      (r.bytes_per_key or 0) - (r.key_bytes or 0))
  end
  mem("word count, text_file, 2 wkr", small_tf and mb(small_tf) or "-", small_tf)
  mem("word count, text_file, 2 wkr", large_tf and mb(large_tf) or "-", large_tf, small_tf, flat)
  mem("running counts (update_state_by_key), 1 wkr", small_st and keys(small_st) or "-", small_st)
  mem("running counts (update_state_by_key), 1 wkr", large_st and keys(large_st) or "-", large_st, small_st, linear)
end

-- Targets
print()
print("targets (issue 9)                                                   measured     target")
local function target(name, value, fmt_v, goal, ok)
  print(string.format("  %-64s %-12s %-10s %s", name, value and string.format(fmt_v, value) or "-", goal,
    value == nil and "(not measured)" or (ok(value) and "met" or "MISSED")))
end
local lj_gm, d1_gm = get("wordcount", "luajit", "gmatch"), get("wordcount", "dstream-1w", "gmatch")
target("engine overhead: word count (gmatch), 1 worker / bare LuaJIT",
  lj_gm and d1_gm and rate(lj_gm) / rate(d1_gm), "%.2fx", "<= 1.25x", function(v) return v <= 1.25 end)
local d1_w, d2_w = get("wordcount", "dstream-1w", "words"), get("wordcount", "dstream-2w", "words")
target("word count (text.words), 1 worker / C baseline",
  c_wc and d1_w and rate(c_wc) / rate(d1_w), "%.2fx", "<= 2x", function(v) return v <= 2 end)
target("word count (text.words), 2 workers' speed over 1 worker's",
  d1_w and d2_w and rate(d2_w) / rate(d1_w), "%.2fx", ">= 1.6x", function(v) return v >= 1.6 end)
local lat = get("latency", "dstream-2w", nil, "10ms")
target(string.format("p99 latency, 10 ms batches at %s records/s", lat and si(lat.rate) or "1 M"),
  lat and lat.p99_ms, "%.1f ms", "<= 50 ms", function(v) return v <= 50 and lat.rate >= 0.95e6 end)
local st = get("state", "dstream-1w")
target("update_state_by_key bytes per key beyond the key's own (1 worker)",
  st and st.bytes_per_key and st.bytes_per_key - st.key_bytes, "%.1f B", "<= 100 B",
  function(v) return v <= 100 end)
local win = get("window", "dstream-2w")
target("windowed word count per core / Spark Streaming's 62.5 K",
  win and win.cpu and (win.records / win.cpu) / SPARK_PER_CORE, "%.1fx", "(reference)", function() return true end)

-- Issue 23's targets over every workload with both rows: the slowest scaling from 1 worker
-- to 2, and the largest engine overhead of 1 worker over bare LuaJIT running the same code.
local workloads = { { "wordcount", "gmatch" }, { "wordcount", "words" }, { "grep" }, { "window" },
  { "topk" }, { "state" }, { "text_file" }, { "socket_wordcount" }, { "kafka_wordcount" } }
local worst_scale, worst_over, worst_share
for _, wv in ipairs(workloads) do
  local d1, d2 = get(wv[1], "dstream-1w", wv[2]), get(wv[1], "dstream-2w", wv[2])
  local lj = get(wv[1] == "text_file" and "wordcount" or wv[1], "luajit", wv[1] == "text_file" and "words" or wv[2])
  local name = wv[1] .. (wv[2] and " (" .. wv[2] .. ")" or "")
  if d1 and d2 and (not worst_scale or rate(d2) / rate(d1) < worst_scale[1]) then
    worst_scale = { rate(d2) / rate(d1), name }
  end
  local c = d1 and d2 and ceiling_of(d2)
  if c and (not worst_share or rate(d2) / rate(d1) / c < worst_share[1]) then
    worst_share = { rate(d2) / rate(d1) / c, name, c }
  end
  if d1 and lj and wv[1] ~= "text_file" and (not worst_over or rate(lj) / rate(d1) > worst_over[1]) then
    worst_over = { rate(lj) / rate(d1), name }
  end
end
print(string.format("  %-64s %-12s %-10s %s", "slowest 2 workers / 1 worker (issue 23): "
  .. (worst_scale and worst_scale[2] or "-"), worst_scale and string.format("%.2fx", worst_scale[1]) or "-",
  ">= 1.7x", worst_scale and (worst_scale[1] >= 1.7 and "met" or "MISSED") or "(not measured)"))
print(string.format("  %-64s %-12s %-10s %s", "  as a share of the machine's ceiling (2 copies / 1), lowest: "
  .. (worst_share and worst_share[2] or "-"), worst_share and string.format("%.0f%% of %.2fx", 100 * worst_share[1],
  worst_share[3]) or "-", "", "(2 programs sharing nothing get 2c/1)"))
print(string.format("  %-64s %-12s %-10s %s", "largest 1 worker / bare LuaJIT (issue 23): "
  .. (worst_over and worst_over[2] or "-"), worst_over and string.format("%.2fx", worst_over[1]) or "-",
  "<= 1.15x", worst_over and (worst_over[1] <= 1.15 and "met" or "MISSED") or "(not measured)"))

for _, c in ipairs(checks) do print(c) end
for _, f in ipairs(failed) do print("FAILED: " .. f .. " (see bench/out/log.txt)") end

-- Traces: the per-record loops must compile; every aborted trace that starts in dstream's
-- worker or the user code is listed, marked "compiled later" when a trace from the same start
-- (a root at the same line, or a side trace of the same exit) was compiled after it; an abort
-- never followed by one fell back to the interpreter there (repeated, LuaJIT blacklists it).
if traces_file then
  print()
  print("traces (-jv, 1 worker), in dstream/worker/ and the user code (wordcount_user.lua, grep.lua, dstream/text.lua):")
  local ours = { -- dstream/worker/*.lua (-jv names files without their folder)
    "init%.lua", "task%.lua", "readers%.lua", "operators%.lua", "terminals%.lua",
    "wordcount_user%.lua", "grep%.lua", "text%.lua" }
  local function is_ours(loc)
    for _, p in ipairs(ours) do if loc:match("^" .. p .. ":") then return true end end
  end
  local sections, order = {}, {}
  local section
  for line in io.lines(traces_file) do
    local name = line:match("^== (.*)")
    if name then
      section = { name = name, events = {} }
      sections[name] = section
      order[#order + 1] = name
    elseif section then
      local body = line:match("^%[TRACE (.*)%]$")
      if body then
        local aborted = body:match("^%-%-%- ")
        local rest = aborted and body:sub(5) or body:match("^%s*%d+ (.*)$")
        if rest then
          local parent = rest:match("^(%(%d+/%w+%)) ")
          local loc = (parent and rest:sub(#parent + 2) or rest):match("^([%w_%.%-]+:%d+)")
          if loc then
            -- reason: why it aborted, or "fallback to interpreter" (a side exit given up)
            local ev = { start = (parent and (parent .. " ") or "") .. loc, loc = loc, aborted = aborted ~= nil,
              reason = rest:match(" %-%- (.*)$"), kind = not aborted and rest:match(" (%a+)$") }
            section.events[#section.events + 1] = ev
          end
        end
      end
    end
  end
  local problems = 0
  for _, name in ipairs(order) do
    local evs = sections[name].events
    local loops, aborts = {}, {}
    for i, ev in ipairs(evs) do
      if is_ours(ev.loc) then
        if not ev.aborted and ev.kind == "loop" and not ev.start:match("^%(") then loops[#loops + 1] = ev.loc end
        if ev.aborted then
          local later = false
          for j = i + 1, #evs do
            local e = evs[j]
            if not e.aborted and (e.start == ev.start or (not ev.start:match("^%(") and e.loc == ev.loc)) then later = true end
          end
          local key = ev.start .. " -- " .. ev.reason .. (later and "  [compiled later]" or "  [not retried]")
          aborts[key] = (aborts[key] or 0) + 1
          if not later then problems = problems + 1 end
        end
      end
    end
    print(string.format("  %-16s loops compiled: %s", name, #loops > 0 and table.concat(loops, ", ") or "(none)"))
    local keys = {}
    for k in pairs(aborts) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do print(string.format("  %-16s   %dx aborted %s", "", aborts[k], k)) end
  end
  print(string.format("  %d aborted trace(s) in these files never compiled afterwards (full log: %s)", problems, traces_file))

  -- The check of issue 9 (item 6), each abort listed under it. -jv does not print
  -- blacklisting: counted are the root starts that aborted 11 times in one process (LuaJIT
  -- doubles a start's penalty from 72 at each abort and blacklists it above 60000) and the
  -- side exits left to the interpreter after their failed attempts.
  local aborted, blacklisted, list = 0, 0, {}
  for _, name in ipairs(order) do
    local starts = {}
    for _, ev in ipairs(sections[name].events) do
      local given_up = not ev.aborted and ev.reason == "fallback to interpreter"
      if is_ours(ev.loc) and (ev.aborted or given_up) then
        list[#list + 1] = string.format("  %-16s %s -- %s", name, ev.start, ev.reason)
        if given_up then
          blacklisted = blacklisted + 1
        else
          aborted = aborted + 1
          if not ev.start:match("^%(") then
            starts[ev.loc] = (starts[ev.loc] or 0) + 1
            if starts[ev.loc] == 11 then blacklisted = blacklisted + 1 end
          end
        end
      end
    end
  end
  print()
  print(string.format("traces: %d aborted, %d blacklisted in the hot loops of word count and grep", aborted, blacklisted))
  for _, l in ipairs(list) do print(l) end
end
