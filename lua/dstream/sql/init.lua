-- dstream/sql: SQL over streams and datasets. to_table registers a stream or a batch under a
-- name with its columns; query parses (grammar.lua), checks (analyze.lua) and plans
-- (plan.lua) a SELECT into the operators of a stream or a batch whose records are rows
-- (tables with the selected column names). The tables live on the context.
local util = require("dstream.util")
local stream_mod = require("dstream.stream")

local M = {}

local TABLE_OPTIONS = { event_time = true, watermark = true }

local function tables_of(ctx)
  ctx._sql_tables = ctx._sql_tables or {}
  return ctx._sql_tables
end

-- stream:to_table(name, columns [, opts]) / rdd:to_table(name, columns): returns the stream or
-- batch; a later to_table of the same name replaces it (as Spark's createOrReplaceTempView).
function M.to_table(source, name, columns, opts)
  local who = "to_table"
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    util.raise(who .. ": the table name must be an identifier (letters, digits, _), got " .. tostring(name))
  end
  if type(columns) == "string" then columns = { columns } end
  if type(columns) ~= "table" or #columns == 0 then
    util.raise(who .. ": columns must be a list of column names, e.g. { \"word\", \"n\" }, got " .. type(columns))
  end
  local seen, cols = {}, {}
  for i, c in ipairs(columns) do
    if type(c) ~= "string" or not c:match("^[%a_][%w_]*$") then
      util.raise(("%s: column %d must be a name (letters, digits, _), got %s"):format(who, i, tostring(c)))
    end
    if seen[c:lower()] then util.raise(who .. ": column '" .. c .. "' is named twice") end
    seen[c:lower()] = true
    cols[i] = c
  end
  opts = opts or {}
  util.check_table(opts, who, "the options")
  for k in pairs(opts) do
    if not TABLE_OPTIONS[k] then util.raise(who .. ": unknown option '" .. tostring(k) .. "' (it takes event_time, watermark)") end
  end
  local is_stream = stream_mod.is_stream(source)
  if opts.event_time ~= nil then
    if not is_stream then util.raise(who .. ": event_time is for stream tables") end
    if not seen[tostring(opts.event_time):lower()] then
      util.raise(("%s: event_time '%s' is not one of the columns (%s)"):format(who, tostring(opts.event_time), table.concat(cols, ", ")))
    end
  end
  if opts.watermark ~= nil then
    local ok, err = util.parse_duration(opts.watermark, true) -- (0: the default)
    if not ok then util.raise(who .. ": watermark: " .. err) end
    if opts.event_time == nil then util.raise(who .. ": watermark needs event_time") end
  end
  tables_of(source.ctx)[name:lower()] = { name = name, columns = cols, source = source, is_stream = is_stream,
    event_time = opts.event_time, watermark = opts.watermark }
  return source
end

local QUERY_OPTIONS = { emit = true, mode = true }

local function compile(ctx, text, opts, who, override)
  if type(text) ~= "string" then util.raise(who .. ": expected the query text, got " .. type(text)) end
  opts = opts or {}
  util.check_table(opts, who, "the options")
  for k in pairs(opts) do
    if not QUERY_OPTIONS[k] then util.raise(who .. ": unknown option '" .. tostring(k) .. "' (it takes emit, mode)") end
  end
  if opts.emit ~= nil and opts.emit ~= "final" and opts.emit ~= "update" then
    util.raise(who .. ": emit must be \"final\" or \"update\", got " .. tostring(opts.emit))
  end
  if opts.mode ~= nil and opts.mode ~= "batch" and opts.mode ~= "running" then
    util.raise(who .. ": mode must be \"batch\" (GROUP BY per batch) or \"running\" (totals across batches), got " .. tostring(opts.mode))
  end
  local has_grammar, grammar = pcall(require, "dstream.sql.grammar") -- needs lpeg
  if not has_grammar then util.raise(who .. ": " .. tostring(grammar)) end
  local ast, err = grammar.parse(text)
  if not ast then util.raise(who .. ": " .. err) end
  local tables = tables_of(ctx)
  if override then tables = override(tables) end
  local ok, q = pcall(require("dstream.sql.analyze").analyze, ast, text, tables)
  if not ok then util.raise(who .. ": " .. tostring(q)) end
  local built, out, steps = pcall(require("dstream.sql.plan").build, q, opts)
  if not built then util.raise(who .. ": " .. tostring(out)) end
  return q, out, steps
end

-- ctx:sql(text [, opts]): a stream when a table of the query is a stream, else a batch.
function M.query(ctx, text, opts)
  local q, out = compile(ctx, text, opts, "sql")
  local cols = q.columns
  if stream_mod.is_stream(out) then
    out = out:_derive("sql", function(r)
      r._sql_columns = cols
      return r
    end)
  end
  out._sql_columns = cols
  return out
end

-- ctx:explain(text [, opts]): the plan and the generated code, printed and returned.
function M.explain(ctx, text, opts)
  local q, _, steps = compile(ctx, text, opts, "explain")
  local s = require("dstream.sql.plan").explain_text(q, steps)
  io.stdout:write(s, "\n")
  io.stdout:flush()
  return s
end

-- The REPL's :sql: a query over the tables as they are now; a stream table reads the newest
-- batch its stream produced.
function M.run_now(ctx, text)
  local q, out = compile(ctx, text, nil, "sql", function(tables)
    local now = {}
    for k, def in pairs(tables) do
      local d = {}
      for f, v in pairs(def) do d[f] = v end
      if def.is_stream then
        local r = def.source._newest
        if not r then
          r = ctx:parallelize({}, 1)
        end
        d.source, d.is_stream = r, false
      end
      now[k] = d
    end
    return now
  end)
  out._sql_columns = q.columns
  require("dstream.sql.show").show(out, 20)
  return out
end

return M
