-- dstream/sql/plan.lua: an analyzed query -> dstream operators. The same calls build a stream
-- (when a table of the query is a stream: the plan runs on every batch) or a batch (static
-- tables alone): filter for WHERE, map for projections, reduce_by_key (combined in each
-- partition first) for GROUP BY, join/left_outer_join keyed by the ON equalities,
-- reduce_by_key_and_window/session_window after event_time for windows, update_state_by_key
-- for running totals, distinct, sort_by and map_partitions for DISTINCT, ORDER BY and LIMIT.
-- Every function given to them is generated Lua (codegen.lua), listed by explain().
local codegen = require("dstream.sql.codegen")
local grammar = require("dstream.sql.grammar")
local stream_mod = require("dstream.stream")
local records = require("dstream.sql.records")
local aggregates = require("dstream.sql.aggregates")

local M = {}

local var, extract = records.var, records.extract
local slots_of, merge_src = aggregates.slots_of, aggregates.merge_src

local Planner = {}
Planner.__index = Planner

function Planner:step(op, label, src, ...)
  local fn = src and codegen.load(src, op, ...) or nil
  self.steps[#self.steps + 1] = { op = op, label = label, src = src }
  return fn
end
function Planner:note(op, label) self.steps[#self.steps + 1] = { op = op, label = label } end

-- A generator for expressions over the current record; `rec` is nil for a raw source record
-- (a, b) of table 1, else the Lua expression of the array of the joined tables' records.
function Planner:row_gen(rec, extra)
  local q = self.q
  local gen = codegen.new(function(e) return var(e.ti, e.ci) end, {
  })
  local pro = {}
  for _, t in ipairs(q.scope) do
    if next(t.used) then
      local a, b
      if rec then
        a = ("r%d"):format(t.index)
        pro[#pro + 1] = ("local %s = %s[%d]"):format(a, rec, t.index)
        pro[#pro + 1] = ("if %s == nil then %s = false end"):format(a, a) -- a LEFT JOIN miss: all NULL
      else
        a, b = "a", "b"
      end
      if not rec and t.index > 1 then break end
      for _, l in ipairs(extract(t, a, b)) do pro[#pro + 1] = l end
    end
  end
  for _, l in ipairs(pro) do gen:emit(l) end
  if extra then extra(gen) end
  return gen
end

function Planner:params() return self.rec and "rec" or "a, b" end

-- Runs fn with only the columns of exprs (and extra columns { ti, ci }) marked used, so the
-- code it generates reads just those.
function Planner:with_used(exprs, fn, extra)
  local q = self.q
  local saved = {}
  for _, t in ipairs(q.scope) do saved[t.index] = t.used; t.used = {} end
  local function mark(e)
    if type(e) ~= "table" then return end
    if e.tag == "col" and e.ti then q.scope[e.ti].used[e.ci] = true end
    for k, v in pairs(e) do if type(v) == "table" and k ~= "t" then mark(v) end end
  end
  for _, e in ipairs(exprs) do mark(e) end
  for _, x in ipairs(extra or {}) do q.scope[x[1]].used[x[2]] = true end
  local out = { fn() }
  for _, t in ipairs(q.scope) do t.used = saved[t.index] end
  return unpack(out)
end

-- An expression's text for error messages.
function Planner:text(e) return codegen.sql_text(e) end

require("dstream.sql.joins")(Planner)
aggregates.install(Planner)
---------------------------------------------------------------------------------------------

-- The projection: a row table { name = value, ... } (and hidden sort values when ORDER BY
-- uses expressions that are not output columns).
function Planner:project(gen, hidden)
  local q = self.q
  local fields = {}
  for i, it in ipairs(q.items) do
    fields[i] = ("[%q] = %s"):format(it.name, gen:expr(it.expr))
  end
  for i, o in ipairs(hidden) do fields[#fields + 1] = ("[%q] = %s"):format("\1order" .. i, gen:expr(o.expr)) end
  return "{ " .. table.concat(fields, ", ") .. " }"
end

local function order_key_src(order)
  local parts = { "local key, n = {}, 0" }
  for _, o in ipairs(order) do
    local f = ("row[%q]"):format(o.col or ("\1order" .. o.hidden))
    local dir = o.desc and "desc" or "asc"
    parts[#parts + 1] = ("do local v = %s\n    if v == nil then n = n + 1; key[n] = %d else n = n + 1; key[n] = %d;"
      .. " n = n + 1; key[n] = rt.rank_%s(v); n = n + 1; key[n] = rt.%s(v) end end")
      :format(f, o.desc and 1 or 0, o.desc and 0 or 1, dir, dir)
  end
  return "local rt = require(\"dstream.sql.runtime\")\nreturn function(row)\n  " .. table.concat(parts, "\n  ") .. "\n  return key\nend"
end

-- WHERE: a filter over the current record.
function Planner:where_stage(ds)
  local q = self.q
  local gen = self:row_gen(self.rec and "rec" or nil)
  gen:emit(("return %s == true"):format(gen:truth(q.where)))
  return ds:filter(self:step("filter", "WHERE " .. self:text(q.where), gen:chunk(self:params())))
end

-- The event time of a windowed query's table (event_time with the table's watermark).
function Planner:event_time_stage(ds, opts)
  local q, first, window = self.q, self.q.scope[1].def, self.q.window
  if not stream_mod.is_stream(ds) then
    error(grammar.caret(q.text, window.pos, "windows need a stream table (a dataset has no event time flowing)"), 0)
  end
  local ts = window.ts
  local gen = self:with_used({ ts }, function() return self:row_gen(nil) end)
  gen:emit(("return %s"):format(var(1, ts.ci)))
  local tsfn = self:step("event_time", ("%s, watermark %s, emit %s"):format(ts.name, tostring(first.watermark or 0),
    opts.emit or "final"), gen:chunk("a, b"))
  return ds:event_time(tsfn, { watermark = first.watermark, emit = opts.emit })
end

-- GROUP BY: the key and state map, the merge (per batch, per window, or running), then the
-- HAVING filter and the output rows over (key, state).
function Planner:group_stage(ds, opts, hidden)
  local q, window = self.q, self.q.window
  local window_join = self.window_rec
  local slots = slots_of(q)
  if opts.mode == "running" and (window or not stream_mod.is_stream(ds)) then
    error(grammar.caret(q.text, q.ast.pos, "mode = \"running\" keeps GROUP BY totals of a stream table across batches: not for windows or datasets"), 0)
  end
  -- Several aggregates (or a COUNT(DISTINCT)) outside windows: combine_by_key reads them
  -- from the records, one state per key and partition; else the record's state is a scalar.
  local combine = (not window or window_join) and (#slots > 1 or slots[1].kind == "distinct")
  local kfn = self:step("map", combine and "group key, and the record" or "group key and the record's aggregate state",
    self:keyed_state(slots, combine))
  ds = ds:map(kfn)
  local merge_pure = codegen.load(merge_src(slots, true), "merge")
  local global = #q.group == 0 and not window
  local post_kind = window_join and "joined" or nil
  if window and not window_join and (window.kind == "tumble" or window.kind == "hop") then
    self:step("reduce_by_key_and_window", ("%s: length %d ms, slide %d ms (event time)"):format(window.kind:upper(),
      window.len, window.slide), merge_src(slots, true))
    ds = ds:reduce_by_key_and_window(merge_pure, window.len / 1000, window.slide / 1000)
    post_kind = "window"
  elseif window and not window_join then
    self:note("session_window", ("gap %d ms (event time)"):format(window.gap))
    ds = ds:session_window(window.gap / 1000)
    post_kind = "session"
  else
    local parts = global and ", 1 partition" or ""
    if combine then
      local create_src, merge_value_src = self:combiner_srcs(slots)
      local create = self:step("combine_by_key", "create: a key's state from its first record in a partition", create_src)
      local merge_value = self:step("combine_by_key", "merge_value: a record into the state", merge_value_src)
      local merge = self:step("combine_by_key", "merge_combiners: the partitions' states" .. parts, merge_src(slots, false))
      ds = ds:combine_by_key(create, merge_value, merge, global and 1 or nil)
    else
      local merge = self:step("reduce_by_key", "merge states (combined in each partition first)" .. parts, merge_src(slots, false))
      ds = ds:reduce_by_key(merge, global and 1 or nil)
    end
    if opts.mode == "running" then
      local upd = self:step("update_state_by_key", "running totals across batches (checkpointed keyed state)",
        "local merge = ...\nreturn function(values, state)\n  for i = 1, #values do\n    if state == nil then state = values[i] else state = merge(state, values[i]) end\n  end\n  return state\nend",
        codegen.load(merge_src(slots, false), "merge"))
      ds = ds:update_state_by_key(upd)
    end
  end
  -- The functions after the shuffle; a session's fold its values with merge.
  local function post(op, label, gen, params, before)
    local src = gen:chunk(params, nil, before)
    if post_kind == "session" then src = "local merge = ...\n" .. src end
    return self:step(op, label, src, merge_pure)
  end
  if global then
    local gen = self:post_gen(slots, post_kind)
    local hv = q.having and gen:truth(q.having)
    local row = self:project(gen, hidden)
    if hv then gen:emit(("if %s ~= true then return {} end"):format(hv)) end
    gen:emit(("return { %s }"):format(row))
    return ds:map_partitions(post("map_partitions", "the aggregates (one row, also for no records)", gen, "iter",
      { "  local k, s = iter()" }))
  end
  if q.having then
    local gen = self:post_gen(slots, post_kind)
    gen:emit(("return %s == true"):format(gen:truth(q.having)))
    ds = ds:filter(post("filter", "HAVING " .. self:text(q.having), gen, "k, s"))
  end
  local gen = self:post_gen(slots, post_kind)
  gen:emit(("return %s"):format(self:project(gen, hidden)))
  return ds:map(post("map", "the output row", gen, "k, s"))
end

-- DISTINCT: rows as arrays (NULL as NULL_KEY: distinct compares keys), and back.
function Planner:distinct_stage(ds)
  local q = self.q
  local to_arr, from_arr, fields = {}, {}, {}
  for i, name in ipairs(q.columns) do
    to_arr[i] = ("(row[%q] == nil and rt.NULL_KEY or row[%q])"):format(name, name)
    from_arr[i] = ("local c%d = v[%d]; if c%d == rt.NULL_KEY then c%d = nil end"):format(i, i, i, i)
    fields[i] = ("[%q] = c%d"):format(name, i)
  end
  local head = "local rt = require(\"dstream.sql.runtime\")\n"
  ds = ds:map(self:step("map", "the row as an array (for distinct)", head .. "return function(row) return { "
    .. table.concat(to_arr, ", ") .. " } end"))
  self:note("distinct", "DISTINCT")
  ds = ds:distinct()
  return ds:map(self:step("map", "the array as a row", head .. "return function(v)\n  " .. table.concat(from_arr, "\n  ")
    .. "\n  return { " .. table.concat(fields, ", ") .. " }\nend"))
end

-- ORDER BY (sort_by; one partition when a LIMIT follows) and LIMIT (map_partitions).
function Planner:order_limit_stage(ds)
  local q = self.q
  if #q.order > 0 then
    local keyfn = self:step("sort_by", "ORDER BY" .. (q.limit and " (into 1 partition, for LIMIT)" or ""), order_key_src(q.order))
    ds = ds:sort_by(keyfn, true, q.limit and 1 or nil)
  end
  if q.limit then
    local take = self:step("map_partitions", "LIMIT " .. q.limit, ("local n = %d\nreturn function(iter)\n  local out = {}\n  for row in iter do\n    if #out >= n then break end\n    out[#out + 1] = row\n  end\n  return out\nend"):format(q.limit))
    if #q.order == 0 then -- each partition's first n, then the first n of those
      ds = ds:map_partitions(take)
      self:note("repartition", "1 partition")
      ds = ds:repartition(1)
    end
    ds = ds:map_partitions(take)
  end
  return ds
end

function M.build(q, opts)
  opts = opts or {}
  local self = setmetatable({ q = q, steps = {}, rec = false }, Planner)
  local first = q.scope[1].def
  local ds = first.source
  self:note("scan", ("%s (%s, columns %s)"):format(first.name, stream_mod.is_stream(ds) and "stream" or "dataset",
    table.concat(first.columns, ", ")))
  if q.window and #q.scope > 1 then
    ds = self:window_join(q.joins[1], q.window, opts)
  else
    if q.window then ds = self:event_time_stage(ds, opts) end
    for i = 2, #q.scope do ds = self:join(ds, q.joins[i - 1], i) end
  end
  if q.where then ds = self:where_stage(ds) end
  -- ORDER BY terms that are not output columns travel as hidden fields of the row.
  local hidden = {}
  for _, o in ipairs(q.order) do
    if not o.col then hidden[#hidden + 1] = o; o.hidden = #hidden end
  end
  if q.grouped then
    ds = self:group_stage(ds, opts, hidden)
  else
    if opts.mode == "running" then
      error(grammar.caret(q.text, q.ast.pos, "mode = \"running\" is for GROUP BY queries"), 0)
    end
    local gen = self:row_gen(self.rec and "rec" or nil)
    gen:emit(("return %s"):format(self:project(gen, hidden)))
    ds = ds:map(self:step("map", "the output row", gen:chunk(self:params())))
  end
  if q.distinct then ds = self:distinct_stage(ds) end
  ds = self:order_limit_stage(ds)
  if #hidden > 0 then
    local strip = {}
    for i = 1, #hidden do strip[i] = ("row[%q] = nil"):format("\1order" .. i) end
    ds = ds:map(self:step("map", "drop the hidden ORDER BY values", "return function(row) " .. table.concat(strip, "; ") .. "; return row end"))
  end
  return ds, self.steps
end

-- The plan and the generated code, as ctx:explain prints them.
function M.explain_text(q, steps)
  local out = { "== SQL ==", q.text, "", "== plan ==" }
  for i, s in ipairs(steps) do out[#out + 1] = ("%2d. %-25s %s"):format(i, s.op, s.label or "") end
  out[#out + 1] = ""
  out[#out + 1] = "== generated code =="
  for i, s in ipairs(steps) do
    if s.src then
      out[#out + 1] = ("-- %d. %s: %s"):format(i, s.op, s.label or "")
      out[#out + 1] = s.src
    end
  end
  return table.concat(out, "\n")
end

return M
