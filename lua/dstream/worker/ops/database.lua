-- dstream/worker/ops/database.lua: what workers run for databases: the terminal of to_sql
-- (sql_write: a task's rows in one transaction with its exactly-once marker) and the task of
-- read_sql (sql_read: one query). Worker states only; connections are this VM's
-- (dstream.db.connections), kept across tasks and batches.
local core = require("dstream.core")
local format = require("dstream.format")
local table_new = require("table.new")
local connections = require("dstream.db.connections")
local statements = require("dstream.db.statements")
local task_mod = require("dstream.worker.task")

local ffi = require("ffi")
local type, error = type, error
local records_error = task_mod.records_error

-- A row for messages: col = value, ...
local function row_text(cols, vals, base)
  local parts = {}
  for j, c in ipairs(cols) do
    local v = vals[base + j]
    parts[j] = c .. " = " .. (v == nil and "NULL" or format.brief(v, nil, 80))
  end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" elseif c == "\n" then return "\\n" end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- One dead-letter line: {"table":..,"batch":..,"partition":..,"row":{..},"error":..}.
local function dead_letter_line(spec, cols, vals, base, err)
  local fields = {}
  for j, c in ipairs(cols) do
    local v = vals[base + j]
    local t = type(v)
    local jv = v == nil and "null" or t == "number" and (v % 1 == 0 and string.format("%d", v) or string.format("%.17g", v))
      or t == "boolean" and tostring(v) or json_string(tostring(v))
    fields[j] = json_string(c) .. ":" .. jv
  end
  return string.format('{"table":%s,"batch":%d,"partition":%d,"row":{%s},"error":%s}\n',
    json_string(spec.table), spec.batch_time or 0, task_mod.current.part or 0, table.concat(fields, ","),
    json_string(err))
end

local producers = {} -- this VM's Kafka producers for dead-letter topics, by brokers and conf

-- Sends the dead letters (JSON lines) to spec.dead_letter_topic and waits for their delivery.
local function send_dead_letters(spec, lines, errs)
  local dl = spec.dead_letter_topic
  local keys = {}
  for k, v in pairs(dl.conf or {}) do keys[#keys + 1] = k .. "=" .. v end
  table.sort(keys)
  local id = dl.brokers .. "\0" .. table.concat(keys, "\1")
  local p = producers[id]
  if not p then
    local err
    p, err = core.kafka_producer { brokers = dl.brokers, conf = dl.conf }
    if not p then return nil, err end
    producers[id] = p
  end
  p:mark()
  for i, line in ipairs(lines) do
    local ok, err = p:send(dl.topic, line:sub(1, -2), spec.table, nil, {
      { "dstream.error", errs[i] }, { "dstream.table", spec.table },
      { "dstream.batch", string.format("%d", spec.batch_time or 0) },
      { "dstream.partition", tostring(task_mod.current.part or 0) },
    })
    if not ok then return nil, err end
  end
  return p:flush(30000)
end

-- The rows of an upsert with one row per key (the last one wins, as the records arrive): one
-- INSERT ... ON CONFLICT may not touch a row twice. Returns the new count.
local function last_per_key(vals, n, ncols, key_index)
  local seen, out, single = {}, 0, #key_index == 1 and key_index[1]
  local keep = {}
  for i = n, 1, -1 do
    local base = (i - 1) * ncols
    local k
    if single then k = vals[base + single] else
      local parts = {}
      for x, j in ipairs(key_index) do parts[x] = type(vals[base + j]) .. ":" .. tostring(vals[base + j]) end
      k = table.concat(parts, "\0")
    end
    if k == nil then k = seen end -- NULL keys never conflict: each row is its own
    if k == seen or not seen[k] then
      if k ~= seen then seen[k] = true end
      keep[#keep + 1] = i
    end
  end
  for x = #keep, 1, -1 do
    local i = keep[x]
    out = out + 1
    if out ~= i then
      local from, to = (i - 1) * ncols, (out - 1) * ncols
      for j = 1, ncols do vals[to + j] = vals[from + j] end
    end
  end
  for j = out * ncols + 1, n * ncols do vals[j] = nil end
  return out
end

return function(W)
  local terminals, emit = W.terminals, W.emit

  -- to_sql: the task's records become rows (see dstream.sinks.database for the mapping), kept
  -- in one flat array, and written at the end in one transaction with the marker of (job,
  -- table, batch time, partition); a task whose marker is there already writes nothing.
  function terminals.sql_write(task, spec)
    local cols, ncols = spec.columns, #spec.columns
    local vals, n = table_new(1024 * ncols, 0), 0
    local value = format.value
    local who = "to_sql " .. spec.table
    local function put(base, j, v)
      local t = type(v)
      if t == "table" then v = value(v) elseif t == "function" or t == "userdata" or t == "cdata" or t == "thread" then
        records_error(who .. ": column " .. cols[j] .. " cannot hold a " .. t)
      end
      vals[base + j] = v
    end
    local function push(a, b)
      if a == nil then return end
      local base = n * ncols
      n = n + 1
      if b == nil then
        if type(a) == "table" then
          for j = 1, ncols do
            local v = a[cols[j]]
            if v == nil then v = a[j] end
            put(base, j, v)
          end
        else
          if ncols ~= 1 then
            records_error(who .. ": the record " .. format.brief(a) .. " is one value, the table has "
              .. ncols .. " columns (" .. table.concat(cols, ", ") .. "): make records tables or (key, value) pairs")
          end
          put(base, 1, a)
        end
      else
        local off = 1
        if type(a) == "table" then
          off = #a
          for j = 1, off do put(base, j, a[j]) end
        else
          put(base, 1, a)
        end
        if type(b) == "table" then
          for j = off + 1, ncols do
            local v = b[cols[j]]
            if v == nil then v = b[j - off] end
            put(base, j, v)
          end
        else
          if ncols ~= off + 1 then
            records_error(who .. ": the pair " .. format.brief(a, b) .. " has " .. (off + 1) .. " values, the table has "
              .. ncols .. " columns (" .. table.concat(cols, ", ") .. ")")
          end
          put(base, off + 1, b)
        end
      end
    end
    local function finish()
      local u = assert(connections.parse(spec.url))
      local driver = connections.driver(u)
      local w = statements.writer(spec, driver)
      if n == 0 then -- nothing to write, now or in a re-run: no marker, no transaction
        vals = nil
        return emit(task, 0, 1, false, { { rows = 0, skipped = false, wait_ms = 0, retries = 0, bad = 0 } })
      end
      if spec.mode == "upsert" then n = last_per_key(vals, n, ncols, spec.key_index) end
      local job, batch, part = spec.job, spec.batch_time, task_mod.current.part
      local exactly_once = batch ~= nil
      -- This worker's slot of the driver's waits in progress (dstream.sinks.database).
      local slot = spec.wait_slots and ffi.cast("double *", spec.wait_slots) + (task_mod.worker_index or 0)
      if slot then slot[0] = 0 end
      local stats = { rows = 0, skipped = false, wait_ms = 0, retries = 0, bad = 0 }
      local bad
      local function on_bad(i, msg) bad[#bad + 1] = { i, msg } end
      local res, err, class, row = connections.with_retry(u, "table " .. spec.table, spec.retry_ms, function(conn)
        bad = {}
        if exactly_once then
          local ok, e, c = statements.ensure_markers(conn, driver)
          if not ok then return nil, e, c end
        end
        local ok, e, c = conn:begin()
        if not ok then return nil, e, c end
        local function undo(...)
          conn:rollback()
          return ...
        end
        if exactly_once then
          local done
          done, e, c = statements.committed(conn, driver, job, spec.marker, batch, part)
          if done == nil then return undo(nil, e, c) end
          if done then
            conn:rollback()
            stats.skipped, stats.rows = true, done
            return stats
          end
        end
        local i
        ok, e, c, i = conn:write(w, vals, n, spec.on_error ~= "fail" and on_bad or nil)
        if not ok then return undo(nil, e, c, i) end
        if exactly_once then
          ok, e, c = statements.mark(conn, driver, job, spec.marker, batch, part, n - #bad)
          if not ok then return undo(nil, e, c) end
          if spec.prune_before then
            ok, e, c = statements.prune(conn, driver, job, spec.marker, part, spec.prune_before)
            if not ok then return undo(nil, e, c) end
          end
        end
        if #bad > 0 and (spec.dead_letter or spec.dead_letter_topic) then
          -- Before the commit: a dead letter may repeat (a task run again), never be lost.
          local lines, errs = {}, {}
          for x, b in ipairs(bad) do
            lines[x], errs[x] = dead_letter_line(spec, cols, vals, (b[1] - 1) * ncols, b[2]), b[2]
          end
          local wok, werr
          if spec.dead_letter then
            wok, werr = core.kafka_append(spec.dead_letter, table.concat(lines))
          else
            wok, werr = send_dead_letters(spec, lines, errs)
          end
          if not wok then return undo(nil, "dead letters: " .. tostring(werr), "other") end
        end
        ok, e, c = conn:commit()
        if not ok then return nil, e, c end -- (a lost answer: the retry finds the marker, or not)
        stats.rows, stats.bad = n - #bad, #bad
        return stats
      end, function(ms, e)
        if slot and slot[0] == 0 then slot[0] = core.hrtime_ms() end -- seen on /metrics while it lasts
        stats.retries, stats.wait_ms = stats.retries + 1, stats.wait_ms + ms
        core.log("warn", string.format("%s, table %s (batch %d ms, partition %d): %s; retrying in %.1f s",
          u.name, spec.table, batch or 0, part, tostring(e), ms / 1000))
      end)
      if slot then slot[0] = 0 end
      local refused = not res and class == "data" and row and row_text(cols, vals, (row - 1) * ncols)
      vals = nil -- a trace may keep push alive: not the task's rows
      if not res then
        if refused then
          records_error(string.format("%s refused the row %s: %s (on_error = \"skip\" or \"dead_letter\" keeps the other rows)",
            u.name .. ", table " .. spec.table, refused, (err:gsub("^.-table " .. spec.table:gsub("%p", "%%%0") .. ": ", ""))))
        end
        -- A missing table fails every attempt; so does a database still unreachable after
        -- retry_for (the attempts of the scheduler would wait as long again, each).
        if class == "data" or class == "schema" or class == "connection" then records_error(err) end
        error(err, 0)
      end
      emit(task, 0, 1, false, { res })
    end
    return push, finish
  end

  -- read_sql: one task runs the query and returns { columns = names, rows = arrays }.
  function terminals.sql_read(task, spec)
    return function()
      error("read_sql: a query task takes no records", 0)
    end, function()
      local u = assert(connections.parse(spec.url))
      local res, err, class = connections.with_retry(u, "read_sql", spec.retry_ms, function(conn)
        return conn:query(spec.query)
      end)
      if not res then
        if class == "schema" or class == "data" then records_error(err) end
        error(err, 0)
      end
      emit(task, 0, 1, false, { res })
    end
  end
end
