-- dstream/sinks/database.lua: databases on the driver's side: stream:to_sql (the output that
-- writes each batch through the workers' connections, dstream.worker.ops.database) and
-- ctx:read_sql (a reference table read by a task, static or refreshed between batches).
--
--   stream:to_sql{ url =, table =, columns = {...}, mode = "append" | "upsert", key = {...},
--                  job =, retry_for = "60s", on_error = "fail" | "skip" | "dead_letter",
--                  dead_letter = path | { topic =, brokers =, conf = } }
--   ctx:read_sql(url, query [, { key = column, refresh = "1m", partitions = n, retry_for = }])
--
-- Exactly once: each task of a batch writes its rows and a marker (job, table, batch time,
-- partition) into `dstream_commits` in one transaction; a batch run again after a restart (the
-- batch log gives it the same time and input) finds the markers of the partitions that
-- committed and writes only the others. `job` names the job across restarts: by default the
-- context's name and its checkpoint directory (without one no batch is ever run again, and a
-- run gets an id of its own, so two runs never take each other's markers).
local buffer = require("string.buffer")
local core = require("dstream.core")
local url_mod = require("dstream.db.url")
local util = require("dstream.util")

local M = {}

local sink_options = {
  url = true, table = true, columns = true, mode = true, key = true, job = true, retry_for = true,
  on_error = true, dead_letter = true,
}

local function check_known(opts, known, who)
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      util.raise(string.format("%s: unknown option '%s' (options: %s)", who, tostring(k), table.concat(names, ", ")))
    end
  end
end

local function duration_ms(v, who, what, default)
  if v == nil then return default end
  local ms, err = util.parse_duration(v)
  if not ms then util.raise(who .. ": " .. what .. ": " .. err) end
  return ms
end

local function names_list(v, who, what)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" or #v == 0 then util.raise(who .. ": " .. what .. " must be a list of column names") end
  for _, c in ipairs(v) do
    if type(c) ~= "string" or c == "" then util.raise(who .. ": " .. what .. " must be a list of column names, got a " .. type(c)) end
  end
  return v
end

local ffi = require("ffi")
pcall(ffi.cdef, "char *realpath(const char *path, char *resolved_path); void free(void *p);")

-- The canonical path (links and .. resolved; the same from any working directory), or an
-- absolute one for a path that does not exist yet.
local function abs_path(p)
  local r = ffi.C.realpath(p, nil)
  if r ~= nil then
    local s = ffi.string(r)
    ffi.C.free(r)
    return s
  end
  if p:sub(1, 1) == "/" then return p end
  local pwd = os.getenv("PWD")
  return pwd and (pwd .. "/" .. p) or p
end

-- The job's name in the markers (see the header).
local function job_id(ctx)
  if not ctx._sql_job_id then
    ctx._sql_job_id = ctx.checkpoint_dir and (ctx.name .. ":" .. abs_path(ctx.checkpoint_dir))
      or string.format("%s:run-%d-%d", ctx.name, core.now_ms(), math.random(1, 1e9))
  end
  return ctx._sql_job_id
end

-- Waits in progress, seen while they last: one slot per worker (a double in C memory the
-- driver allocates once per context and never frees, so a worker abandoned mid-task still
-- writes into live memory), where a worker's to_sql task puts the hrtime its wait started and
-- 0 when it ends. A single writer per slot and aligned 8-byte stores: the driver's reads are
-- never torn. /metrics reads them (dstream_sql_waiting_tasks, dstream_sql_waiting_seconds).
pcall(ffi.cdef, "void *malloc(size_t size);")
local function wait_slots(ctx)
  if ctx._sql_wait_slots then return ctx._sql_wait_slots end
  local n = ctx.workers + 1
  local p = ffi.cast("double *", ffi.C.malloc(8 * n))
  ffi.fill(p, 8 * n)
  ctx._sql_wait_slots = p
  local r = ctx:metrics()
  local tasks = r:gauge("dstream_sql_waiting_tasks", "to_sql tasks waiting now for a database they cannot reach")
  local secs = r:gauge("dstream_sql_waiting_seconds", "How long the longest wait for a database in progress has lasted")
  r:collector(function()
    local now, count, longest = core.hrtime_ms(), 0, 0
    for i = 0, n - 1 do
      local t = p[i]
      if t > 0 then count, longest = count + 1, math.max(longest, now - t) end
    end
    tasks:set(count)
    secs:set(longest / 1000)
  end)
  return p
end

local function metrics(ctx)
  local r = ctx:metrics()
  local labels = { "database", "table" }
  wait_slots(ctx)
  return {
    rows = r:counter("dstream_sql_rows_total", "Rows written by to_sql", labels),
    skipped = r:counter("dstream_sql_tasks_skipped_total", "to_sql tasks that found their batch committed (a re-run after a restart) and wrote nothing", labels),
    bad = r:counter("dstream_sql_bad_rows_total", "Rows the database refused, skipped or sent to the dead-letter file (on_error)", labels),
    retries = r:counter("dstream_sql_retries_total", "Waits for a database that could not be reached", labels),
    wait = r:counter("dstream_sql_retry_wait_seconds_total", "Time tasks waited for a database that could not be reached", labels),
  }
end

local function decode_results(results)
  local out = {}
  for _, outputs in ipairs(results) do
    for _, o in ipairs(outputs) do
      if o[1] == 0 then out[#out + 1] = buffer.decode(o[2]:bytes())[1][1] end
    end
  end
  return out
end

-- The terminal of a to_sql output from its options (checked at the user's line), and its
-- metric labels.
local function sink_term(ctx, opts, who)
  if type(opts) ~= "table" then util.raise(who .. ": expected a table of options, got " .. type(opts)) end
  check_known(opts, sink_options, who)
  local u, err = url_mod.parse(opts.url)
  if not u then util.raise(who .. ": url: " .. err) end
  if type(opts.table) ~= "string" or opts.table == "" then util.raise(who .. ": table must be a table name") end
  local columns = names_list(opts.columns, who, "columns")
  local mode = opts.mode or "append"
  if mode ~= "append" and mode ~= "upsert" then
    util.raise(who .. ": mode must be \"append\" or \"upsert\", got " .. tostring(mode))
  end
  local key, key_index
  if mode == "upsert" then
    if opts.key == nil then util.raise(who .. ": mode = \"upsert\" needs key = { columns } (the table's primary key or a unique index)") end
    key = names_list(opts.key, who, "key")
    key_index = {}
    for i, k in ipairs(key) do
      for j, c in ipairs(columns) do if c == k then key_index[i] = j end end
      if not key_index[i] then util.raise(who .. ": key column '" .. k .. "' is not one of the columns") end
    end
  elseif opts.key ~= nil then
    util.raise(who .. ": key is for mode = \"upsert\"")
  end
  local on_error = opts.on_error or (opts.dead_letter and "dead_letter" or "fail")
  if on_error ~= "fail" and on_error ~= "skip" and on_error ~= "dead_letter" then
    util.raise(who .. ": on_error must be \"fail\", \"skip\" or \"dead_letter\", got " .. tostring(on_error))
  end
  -- Dead letters: a file of JSON lines, or a Kafka topic (one message per row, the same JSON).
  local dl, dl_topic = opts.dead_letter, nil
  if type(dl) == "table" and dl.topic ~= nil then
    if type(dl.topic) ~= "string" or dl.topic == "" then util.raise(who .. ": dead_letter.topic must be a topic name") end
    local kafka = require("dstream.kafka")
    if dl.brokers == nil then util.raise(who .. ": dead_letter = { topic = ... } needs brokers = \"host:port\"") end
    dl_topic = { topic = dl.topic, brokers = kafka.brokers_of(dl.brokers, who), conf = kafka.check_conf(dl.conf, who) }
    dl = nil
  elseif type(dl) == "table" then
    dl = dl.file
  end
  if on_error == "dead_letter" and not dl_topic and (type(dl) ~= "string" or dl == "") then
    util.raise(who .. ": on_error = \"dead_letter\" needs dead_letter = path (a file of JSON lines) or"
      .. " { topic = name, brokers = \"host:port\" }")
  end
  if opts.job ~= nil and (type(opts.job) ~= "string" or opts.job == "") then util.raise(who .. ": job must be a string") end
  local term = {
    kind = "sql_write", url = u.url, table = opts.table, columns = columns, mode = mode, key = key,
    key_index = key_index, retry_ms = duration_ms(opts.retry_for, who, "retry_for", 60000),
    on_error = on_error, dead_letter = on_error == "dead_letter" and dl and abs_path(dl) or nil,
    dead_letter_topic = on_error == "dead_letter" and dl_topic or nil,
  }
  term.wait_slots = tonumber(ffi.cast("intptr_t", wait_slots(ctx))) -- (an address below 2^47)
  return term, { database = u.name, table = opts.table }
end

-- Runs the tasks of t over r and adds their figures to the metrics; returns the figures.
local function write(ctx, r, t, labels, who)
  local stats = decode_results(r:_run(function() return t end, who .. " " .. t.table))
  local f = { rows = 0, skipped = 0, bad = 0, retries = 0, wait = 0, longest = 0 }
  for _, s in ipairs(stats) do
    if s.skipped then f.skipped = f.skipped + 1 else f.rows = f.rows + s.rows end
    f.bad, f.retries, f.wait = f.bad + s.bad, f.retries + s.retries, f.wait + s.wait_ms
    f.longest = math.max(f.longest, s.wait_ms)
  end
  local m = metrics(ctx)
  m.rows:inc(f.rows, labels)
  if f.skipped > 0 then m.skipped:inc(f.skipped, labels) end
  if f.bad > 0 then m.bad:inc(f.bad, labels) end
  if f.retries > 0 then
    m.retries:inc(f.retries, labels)
    m.wait:inc(f.wait / 1000, labels)
  end
  return f
end

-- stream:to_sql(opts).
function M.to_sql(stream, opts)
  local who, ctx = "to_sql", stream.ctx
  local term, labels = sink_term(ctx, opts, who)
  -- The markers' name of this output: the table, and its number when several outputs of the
  -- job write one table (each has its own markers; the graph is rebuilt the same at restart).
  ctx._sql_outputs = ctx._sql_outputs or {}
  local same = (ctx._sql_outputs[term.url .. "\0" .. opts.table] or 0) + 1
  ctx._sql_outputs[term.url .. "\0" .. opts.table] = same
  term.marker = same == 1 and opts.table or (opts.table .. "#" .. same)
  metrics(ctx) -- (the families are on /metrics from the start)
  local pruned_at -- the checkpoint whose older markers were deleted last
  ctx:_add_output(stream, function(r, time)
    local t = {}
    for k, v in pairs(term) do t[k] = v end
    t.job, t.batch_time = opts.job or job_id(ctx), time
    -- Markers of batches no restart can run again: before the oldest checkpoint kept (3).
    local ck = ctx.last_checkpoint
    if ck and ck.time ~= pruned_at then
      t.prune_before = ck.time - 3 * ctx.checkpoint_ms
      pruned_at = ck.time
    end
    local f = write(ctx, r, t, labels, who)
    -- The batch's record (the live page's batch view, /api/batches): how long this output
    -- held it waiting for the database (its tasks wait side by side: the longest).
    if f.longest > 0 and ctx.running and ctx.running.time == time then
      ctx.running.sql_wait_ms = (ctx.running.sql_wait_ms or 0) + f.longest
    end
    core.log("debug", string.format("to_sql %s: batch %d ms: %d rows, %d partitions already committed%s",
      opts.table, time, f.rows, f.skipped, f.bad > 0 and (", " .. f.bad .. " rows refused") or ""))
  end)
  return stream
end

-- rdd:to_sql(opts): a dataset's rows, one transaction per partition, no markers (a static
-- dataset is written once, by the call). Returns the rows written.
function M.write_rdd(r, opts)
  local who = "to_sql"
  local term, labels = sink_term(r.ctx, opts, who)
  if opts.job ~= nil then util.raise(who .. ": job is for streams (a dataset's write has no markers)") end
  return write(r.ctx, r, term, labels, who).rows
end

---------------------------------------------------------------------------------------------
-- read_sql

local read_options = { key = true, refresh = true, partitions = true, retry_for = true }

-- Runs the query in one task (on a worker: the driver never blocks on a database) and returns
-- its records: row tables by column name, or (row[key], row) pairs.
local function read_rows(ctx, spec)
  local rdd_mod = require("dstream.rdd")
  local r = rdd_mod.empty(ctx, 1)
  local specs = r:_tasks({ { ops = {}, slices = {} } }, function() return spec end, "read_sql")
  local res = decode_results(ctx:_scheduler():run_tasks(specs))[1]
  local list = {}
  for i, arr in ipairs(res.rows) do
    local row = {}
    for j, c in ipairs(res.columns) do row[c] = arr[j] end
    if spec.key then
      if row[spec.key] == nil then
        error(string.format("read_sql: row %d has no value in the key column '%s' (columns: %s)", i, spec.key,
          table.concat(res.columns, ", ")), 0)
      end
      list[i] = { row[spec.key], row }
    else
      list[i] = row
    end
  end
  return list
end

-- ctx:read_sql(url, query[, opts]).
function M.read_sql(ctx, url, query, opts)
  local who = "read_sql"
  local u, err = url_mod.parse(url)
  if not u then util.raise(who .. ": " .. err) end
  if type(query) ~= "string" or query == "" then util.raise(who .. ": expected a query (SELECT ...), got " .. type(query)) end
  opts = opts or {}
  if type(opts) ~= "table" then util.raise(who .. ": expected a table of options, got " .. type(opts)) end
  check_known(opts, read_options, who)
  if opts.key ~= nil and type(opts.key) ~= "string" then util.raise(who .. ": key must be a column name") end
  util.check_count(opts.partitions, who, "partitions", true)
  local refresh_ms = duration_ms(opts.refresh, who, "refresh", nil)
  local spec = { kind = "sql_read", url = u.url, query = query, key = opts.key,
    retry_ms = duration_ms(opts.retry_for, who, "retry_for", 60000) }
  local nparts = opts.partitions or ctx.partitions
  local rdd_mod = require("dstream.rdd")
  local ok, list = pcall(read_rows, ctx, spec)
  if not ok then util.raise(who .. ": " .. tostring(list)) end
  local data = rdd_mod.from_list(ctx, list, nparts, opts.key ~= nil)
  data.sql_rows = #list
  if not refresh_ms then return data end
  -- Refreshed: every refresh_ms a task reads the query again in the background (a job of its
  -- own on the pool, while batches run); the new rows replace the dataset's partitions at the
  -- start of the next batch, so a batch sees one version of the table from start to end.
  local next_read, reading, fresh = core.now_ms() + refresh_ms, false, nil
  local scheduler = require("dstream.driver.scheduler")
  ctx:_listen("batch_started", function()
    if fresh then -- swap in place: closures holding `data` see the new table
      local new = rdd_mod.from_list(ctx, fresh, nparts, opts.key ~= nil)
      data.parts, data.nparts, data.sql_rows = new.parts, new.nparts, #fresh
      data.sql_refreshed_at = core.now_ms()
      fresh = nil
    end
    if not reading and core.now_ms() >= next_read then
      reading = true
      scheduler.spawn(function() return read_rows(ctx, spec) end, function(done, rows)
        reading, next_read = false, core.now_ms() + refresh_ms
        if done then fresh = rows else
          -- The table keeps its last version; the next refresh tries again.
          core.log("warn", "read_sql: refreshing failed, the previous rows stay: " .. tostring(rows))
        end
      end)
    end
  end)
  return data
end

return M
