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

local M = {}

local LUA_KEYWORDS = {}
for w in ("and break do else elseif end false for function goto if in local nil not or repeat return then true until while")
    :gmatch("%a+") do
  LUA_KEYWORDS[w] = true
end
-- A Lua field access of a column: .name, or ["name"] when name is not a Lua identifier.
local function ident_ok(name)
  if name:match("^[%a_][%w_]*$") and not LUA_KEYWORDS[name] then return "." .. name end
  return ("[%q]"):format(name)
end

local function var(ti, ci) return ("t%d_%d"):format(ti, ci) end

-- Lines that set the locals of table t's used columns from a record: a (and b for a pair),
-- a table with the column names as fields, an array in column order, or a scalar.
local function extract(t, a, b)
  local cols, used = t.def.columns, {}
  for ci in pairs(t.used) do used[#used + 1] = ci end
  table.sort(used)
  if #used == 0 then return {} end
  local names, named, arr = {}, {}, {}
  for i, ci in ipairs(used) do
    names[i] = var(t.index, ci)
    named[i] = a .. ident_ok(cols[ci])
    arr[i] = ("%s[%d]"):format(a, ci)
  end
  local lhs = table.concat(names, ", ")
  local lines = { ("local %s"):format(lhs) }
  local cond = "if"
  if b and #cols == 2 then
    local pair = {}
    for i, ci in ipairs(used) do pair[i] = ci == 1 and a or b end
    lines[#lines + 1] = ("if %s ~= nil then %s = %s"):format(b, lhs, table.concat(pair, ", "))
    cond = "elseif"
  end
  lines[#lines + 1] = ("%s type(%s) ~= \"table\" then %s = %s"):format(cond, a, names[1],
    used[1] == 1 and a or "nil")
  local any_named = {}
  for i, c in ipairs(cols) do any_named[i] = ("%s%s ~= nil"):format(a, ident_ok(c)) end
  lines[#lines + 1] = ("elseif %s then %s = %s"):format(table.concat(any_named, " or "), lhs, table.concat(named, ", "))
  lines[#lines + 1] = ("else %s = %s end"):format(lhs, table.concat(arr, ", "))
  return lines
end

local Planner = {}
Planner.__index = Planner

function Planner:step(op, label, src)
  local fn = src and codegen.load(src, op) or nil
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

-- An expression's text for error messages.
function Planner:text(e) return codegen.sql_text(e) end

---------------------------------------------------------------------------------------------
-- Joins: each side keyed by its side of the ON equalities, then the records of the joined
-- tables kept together in an array (rec[i] is table i's record, nil for a LEFT JOIN miss).

local function conjuncts(e, out)
  if e.tag == "binop" and e.op == "and" then conjuncts(e.l, out); conjuncts(e.r, out)
  else out[#out + 1] = e end
  return out
end
local function tables_of(e, out)
  if type(e) ~= "table" then return out end
  if e.tag == "col" and e.ti then out[e.ti] = true end
  for k, v in pairs(e) do if type(v) == "table" and k ~= "t" then tables_of(v, out) end end
  return out
end

function Planner:key_expr(gen, exprs)
  if #exprs == 1 then
    local v = gen:once(exprs[1])
    return v, ("%s == nil"):format(v)
  end
  local vals, nulls = {}, {}
  for i, e in ipairs(exprs) do
    vals[i] = gen:once(e)
    nulls[i] = vals[i] .. " == nil"
  end
  return "{ " .. table.concat(vals, ", ") .. " }", table.concat(nulls, " or ")
end

-- The ON equalities of join j (table i): the expressions over the tables before i, and the
-- matching ones over table i.
function Planner:on_sides(j, i)
  local q = self.q
  local left_exprs, right_exprs = {}, {}
  local function only_before(ts)
    for ti in pairs(ts) do if ti >= i then return false end end
    return next(ts) ~= nil
  end
  local function only_this(ts)
    for ti in pairs(ts) do if ti ~= i then return false end end
    return next(ts) ~= nil
  end
  for _, c in ipairs(conjuncts(j.on, {})) do
    local ok = c.tag == "binop" and c.op == "="
    if ok then
      local lt, rt_ = tables_of(c.l, {}), tables_of(c.r, {})
      if only_before(lt) and only_this(rt_) then
        left_exprs[#left_exprs + 1], right_exprs[#right_exprs + 1] = c.l, c.r
      elseif only_before(rt_) and only_this(lt) then
        left_exprs[#left_exprs + 1], right_exprs[#right_exprs + 1] = c.r, c.l
      else ok = false end
    end
    if not ok then
      error(grammar.caret(q.text, c.pos, "JOIN ... ON takes equalities between the joined table and the tables before it (a.x = b.y AND ...); put other conditions in WHERE"), 0)
    end
  end
  return left_exprs, right_exprs
end

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

function Planner:join(ds, j, i)
  local q = self.q
  local left_exprs, right_exprs = self:on_sides(j, i)
  local t = q.scope[i]
  -- Left side: the record so far (table 1's raw record, or the array of joined records).
  local lfn = self:with_used(left_exprs, function()
    local lgen = self:row_gen(self.rec and "rec" or nil)
    local lkey, lnull = self:key_expr(lgen, left_exprs)
    lgen:emit(("if %s then return %q, %s end"):format(lnull, "\0NULL-left", self.rec and "rec" or "(b ~= nil and { a, b } or a)"))
    lgen:emit(("return %s, %s"):format(lkey, self.rec and "rec" or "(b ~= nil and { a, b } or a)"))
    local texts = {}
    for k, e in ipairs(left_exprs) do texts[k] = self:text(e) end
    return self:step("map", "key the left side by " .. table.concat(texts, ", "), lgen:chunk(self:params()))
  end)
  local rfn = self:with_used(right_exprs, function()
    local rgen = codegen.new(function(e) return var(e.ti, e.ci) end)
    for _, l in ipairs(extract(t, "a", "b")) do rgen:emit(l) end
    local rkey, rnull = self:key_expr(rgen, right_exprs)
    -- A NULL key joins nothing: such records get a key no left record has.
    rgen:emit(("if %s then return %q, (b ~= nil and { a, b } or a) end"):format(rnull, "\0NULL-right"))
    rgen:emit(("return %s, (b ~= nil and { a, b } or a)"):format(rkey))
    return self:step("map", "key " .. t.alias .. " by its side of ON", rgen:chunk("a, b"))
  end)
  local n = i - 1
  local flat = {}
  if self.rec then
    for k = 1, n do flat[k] = ("l[%d]"):format(k) end
  else flat[1] = "l" end
  flat[#flat + 1] = "v[2]"
  local ffn = self:step("map", "keep the joined records together", ("return function(_, v)\n  local l = v[1]\n  return { %s }\nend")
    :format(table.concat(flat, ", ")))
  local right = t.def.source
  local kind = j.kind == "left" and "left_outer_join" or "join"
  self:note(kind, ("%s %s"):format(j.kind == "left" and "LEFT JOIN" or "JOIN", t.def.name))
  local lkeyed = ds:map(lfn)
  local rkeyed = right:map(rfn)
  local joined
  if stream_mod.is_stream(lkeyed) == stream_mod.is_stream(rkeyed) then
    joined = lkeyed[kind](lkeyed, rkeyed)
  elseif stream_mod.is_stream(lkeyed) then
    -- A static table joined at every batch is keyed once and kept (cache), not recomputed.
    rkeyed = rkeyed:cache()
    joined = lkeyed:transform(function(r) return r[kind](r, rkeyed) end)
  else
    lkeyed = lkeyed:cache()
    joined = rkeyed:transform(function(r) return lkeyed[kind](lkeyed, r) end)
  end
  self.rec = true
  return joined:map(ffn)
end

-- Two stream tables joined within windows: both keyed by their side of ON and tagged, one
-- stream with one event time (so one watermark), group_by_key_and_window, then each final
-- window's records of both sides paired (rec = { left, right, ws = start, we = end }). The
-- GROUP BY after it runs per batch: every window it sees is final (or, with emit = "update",
-- whole again).
function Planner:window_join(j, window, opts)
  local q = self.q
  local function fail(msg) error(grammar.caret(q.text, window.pos, msg), 0) end
  if #q.scope ~= 2 then fail("a window over a JOIN takes two stream tables") end
  if window.kind == "session" then fail("SESSION over a JOIN is not supported: use TUMBLE or HOP") end
  local delay = 0
  for _, t in ipairs(q.scope) do
    if not (t.def.is_stream and t.def.event_time) then
      fail(("a window over a JOIN needs two stream tables with event time; '%s' has none (to_table(name, columns, { event_time = \"ts\" }))")
        :format(t.def.name))
    end
    delay = math.max(delay, t.def.watermark and require("dstream.util").parse_duration(t.def.watermark) or 0)
  end
  local left_exprs, right_exprs = self:on_sides(j, 2)
  local tagged = {}
  for i, exprs in ipairs({ left_exprs, right_exprs }) do
    local t = q.scope[i]
    local et_ci
    for ci, c in ipairs(t.def.columns) do if c:lower() == t.def.event_time:lower() then et_ci = ci end end
    local fn = self:with_used(exprs, function()
      local gen = codegen.new(function(e) return var(e.ti, e.ci) end)
      for _, l in ipairs(extract(t, "a", "b")) do gen:emit(l) end
      local key, null = self:key_expr(gen, exprs)
      local value = ("{ %d, (b ~= nil and { a, b } or a), %s }"):format(i, var(i, et_ci))
      gen:emit(("if %s then return %q, %s end"):format(null, i == 1 and "\0NULL-left" or "\0NULL-right", value))
      gen:emit(("return %s, %s"):format(key, value))
      return self:step("map", ("key %s by its side of ON, tagged %d, with its event time"):format(t.alias, i), gen:chunk("a, b"))
    end, { { i, et_ci } })
    tagged[i] = t.def.source:map(fn)
  end
  self:note("union", "both sides, one event time")
  local tsfn = self:step("event_time", ("the tagged records' time, watermark %d ms (the larger of the tables'), emit %s")
    :format(delay, opts.emit or "final"), "return function(_, v) return v[3] end")
  local ds = tagged[1]:union(tagged[2]):event_time(tsfn, { watermark = delay > 0 and delay / 1000 or nil, emit = opts.emit })
  self:note("group_by_key_and_window", ("%s: length %d ms, slide %d ms (event time)"):format(window.kind:upper(), window.len, window.slide))
  ds = ds:group_by_key_and_window(window.len / 1000, window.slide / 1000)
  local pair_src = ([[
return function(_, w)
  local left, right = {}, {}
  for _, v in ipairs(w.values) do
    if v[1] == 1 then left[#left + 1] = v[2] else right[#right + 1] = v[2] end
  end
  local out, ws, we = {}, w.start, w["end"]
  for _, l in ipairs(left) do
    for _, r in ipairs(right) do out[#out + 1] = { l, r, ws = ws, we = we } end
    if %s and #right == 0 then out[#out + 1] = { l, nil, ws = ws, we = we } end
  end
  return out
end]]):format(j.kind == "left" and "true" or "false")
  local ffn = self:step("flat_map", (j.kind == "left" and "LEFT JOIN " or "JOIN ") .. q.scope[2].def.name
    .. ": the window's records of both sides paired", pair_src)
  self.rec, self.window_rec = true, true
  return ds:flat_map(ffn)
end

---------------------------------------------------------------------------------------------
-- Aggregates: every aggregate is one or two slots of a state (AVG is a sum and a count); a
-- record's state is made by the map before the shuffle, states merge in reduce_by_key.

local function slots_of(q)
  local slots = {}
  for _, a in ipairs(q.aggregates) do
    local name = a.name:lower()
    a.slots = {}
    local function add(kind, arg)
      slots[#slots + 1] = { kind = kind, arg = arg, agg = a }
      a.slots[#a.slots + 1] = #slots
    end
    if name == "count" then add(a.distinct and "distinct" or "count", not a.star and a.args[1] or nil)
    elseif name == "avg" then add("sum", a.args[1]); add("count", a.args[1])
    elseif a.distinct then error(grammar.caret(q.text, a.pos, name:upper() .. "(DISTINCT x) is not supported: only COUNT(DISTINCT x)"), 0)
    else add(name, a.args[1]) end
  end
  return slots
end

local MERGE = { count = "%s + %s", sum = "rt.sum(%s, %s)", min = "rt.min(%s, %s)", max = "rt.max(%s, %s)" }

-- Source of merge(a, b) for the states; pure: never change a (window panes are shared).
local function merge_src(slots, pure)
  local lines = {}
  if #slots == 1 then
    local s = slots[1]
    if s.kind == "distinct" then
      if pure then lines[1] = "  return rt.union(rt.union({}, a), b)" else lines[1] = "  return rt.union(a, b)" end
    else lines[1] = "  return " .. MERGE[s.kind]:format("a", "b") end
  else
    local parts = {}
    for i, s in ipairs(slots) do
      local ai, bi = ("a[%d]"):format(i), ("b[%d]"):format(i)
      if s.kind == "distinct" then
        parts[i] = pure and ("rt.union(rt.union({}, %s), %s)"):format(ai, bi) or ("rt.union(%s, %s)"):format(ai, bi)
      else parts[i] = MERGE[s.kind]:format(ai, bi) end
    end
    if pure then
      lines[1] = "  return { " .. table.concat(parts, ", ") .. " }"
    else
      for i, p in ipairs(parts) do lines[i] = ("  a[%d] = %s"):format(i, p) end
      lines[#lines + 1] = "  return a"
    end
  end
  return "local rt = require(\"dstream.sql.runtime\")\nreturn function(a, b)\n" .. table.concat(lines, "\n") .. "\nend"
end

-- The map before the shuffle: the group key and the record's state.
-- With pass_record, the value is the record itself (for combine_by_key, which reads the
-- aggregates' inputs from it: no table per record).
function Planner:keyed_state(slots, pass_record)
  local q = self.q
  local gen = self:row_gen(self.rec and "rec" or nil)
  local key
  if self.window_rec then -- a window join: the window is part of the key
    local ks = { "rec.ws", "rec.we" }
    for i, g in ipairs(q.group) do
      ks[i + 2] = gen:once(g)
      gen:emit(("if %s == nil then %s = rt.NULL_KEY end"):format(ks[i + 2], ks[i + 2]))
    end
    key = "{ " .. table.concat(ks, ", ") .. " }"
  elseif #q.group == 0 then key = "true"
  elseif #q.group == 1 then
    key = gen:once(q.group[1])
    gen:emit(("if %s == nil then %s = rt.NULL_KEY end"):format(key, key))
  else
    local ks = {}
    for i, g in ipairs(q.group) do
      ks[i] = gen:once(g)
      gen:emit(("if %s == nil then %s = rt.NULL_KEY end"):format(ks[i], ks[i]))
    end
    key = "{ " .. table.concat(ks, ", ") .. " }"
  end
  if pass_record then
    gen:emit(("return %s, %s"):format(key, self.rec and "rec" or "(b ~= nil and { a, b } or a)"))
    return gen:chunk(self:params())
  end
  local states = {}
  for i, s in ipairs(slots) do
    local x = s.arg and gen:expr(s.arg)
    if s.kind == "count" then states[i] = x and ("(%s ~= nil and 1 or 0)"):format(x) or "1"
    elseif s.kind == "distinct" then states[i] = ("rt.set_of(%s)"):format(x)
    elseif s.kind == "sum" then states[i] = ("rt.number_sum(%s, %q)"):format(x, self:text(s.agg))
    else states[i] = ("rt.state(%s)"):format(x) end
  end
  local state = #states == 1 and states[1] or ("{ " .. table.concat(states, ", ") .. " }")
  gen:emit(("return %s, %s"):format(key, state))
  return gen:chunk(self:params())
end

-- combine_by_key's create(record) and merge_value(state, record): the aggregates' inputs read
-- from the record, the state an array of slots changed in place.
function Planner:combiner_srcs(slots)
  local function body(update)
    local gen = self:row_gen(self.rec and "rec" or nil)
    local out = {}
    for i, s in ipairs(slots) do
      local x = s.arg and gen:once(s.arg)
      local c = #slots == 1 and "c" or ("c[%d]"):format(i) -- one slot: the state is the slot (as merge_src)
      if s.kind == "count" then
        out[i] = update and ("%s = %s + %s"):format(c, c, x and ("(%s ~= nil and 1 or 0)"):format(x) or "1")
          or (x and ("(%s ~= nil and 1 or 0)"):format(x) or "1")
      elseif s.kind == "distinct" then
        out[i] = update and ("if %s ~= nil and %s == %s then %s[%s] = true end"):format(x, x, x, c, x) or ("rt.set_of(%s)"):format(x)
      else
        local input = s.kind == "sum" and ("rt.number_sum(%s, %q)"):format(x, self:text(s.agg)) or ("rt.state(%s)"):format(x)
        out[i] = update and ("%s = rt.%s(%s, %s)"):format(c, s.kind, c, input) or input
      end
    end
    if update then
      for _, l in ipairs(out) do gen:emit(l) end
      gen:emit("return c")
    else
      gen:emit("return " .. (#slots == 1 and out[1] or ("{ " .. table.concat(out, ", ") .. " }")))
    end
    return gen
  end
  local create = body(false):chunk(self:params())
  local merge_value = body(true):chunk("c, " .. self:params())
  return create, merge_value
end

-- A generator over (k, s) after the shuffle: group keys, finalized aggregates, window bounds.
function Planner:post_gen(slots, window)
  local q = self.q
  local agg_var = {}
  local gen = codegen.new(function(e)
    if e.tag == "wcol" then return e.window == "window_start" and "wstart" or "wend" end
    error(grammar.caret(q.text, e.pos, "column '" .. e.name .. "' must be in GROUP BY or inside an aggregate"), 0)
  end, {
    agg = function(e) return agg_var[e.agg_index] end,
    group = function(e)
      local gi = #q.group > 0 and q.group[q.key_of(e)]
      if gi then return "g" .. gi end
    end,
  })
  if window == "window" then
    gen:emit("local wstart, wend = s.start, s[\"end\"]")
    gen:emit("s = s.value")
  elseif window == "session" then
    gen:emit("local wstart, wend = s.start, s[\"end\"]")
    gen:emit("local values = s.values")
    gen:emit("s = values[1]")
    gen:emit("for i = 2, #values do s = merge(s, values[i]) end")
  end
  if window == "joined" then
    gen:emit("local wstart, wend = k[1], k[2]")
    for i = 1, #q.group do
      gen:emit(("local g%d = k[%d]"):format(i, i + 2))
      gen:emit(("if g%d == rt.NULL_KEY then g%d = nil end"):format(i, i))
    end
  elseif #q.group == 1 then
    gen:emit("local g1 = k")
    gen:emit("if g1 == rt.NULL_KEY then g1 = nil end")
  elseif #q.group > 1 then
    for i = 1, #q.group do
      gen:emit(("local g%d = k[%d]"):format(i, i))
      gen:emit(("if g%d == rt.NULL_KEY then g%d = nil end"):format(i, i))
    end
  end
  local function slot(i) return #slots == 1 and "s" or ("s[%d]"):format(i) end
  for ai, a in ipairs(q.aggregates) do
    local name, v = a.name:lower(), "agg" .. ai
    agg_var[ai] = v
    local s1 = slot(a.slots[1])
    if name == "avg" then
      local s2 = slot(a.slots[2])
      gen:emit(("local %s; if s ~= nil and rt.value(%s) ~= nil and %s > 0 then %s = %s / %s end"):format(v, s1, s2, v, s1, s2))
    elseif name == "count" and a.distinct then
      gen:emit(("local %s = s ~= nil and rt.set_size(%s) or 0"):format(v, s1))
    elseif name == "count" then
      gen:emit(("local %s = s ~= nil and %s or 0"):format(v, s1))
    else
      gen:emit(("local %s; if s ~= nil then %s = rt.value(%s) end"):format(v, v, s1))
    end
  end
  return gen
end

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
    parts[#parts + 1] = ("do local v = %s\n    if v == nil then n = n + 1; key[n] = %d else n = n + 1; key[n] = %d; n = n + 1; key[n] = rt.%s(v) end end")
      :format(f, o.desc and 1 or 0, o.desc and 0 or 1, o.desc and "desc" or "asc")
  end
  return "local rt = require(\"dstream.sql.runtime\")\nreturn function(row)\n  " .. table.concat(parts, "\n  ") .. "\n  return key\nend"
end

function M.build(q, opts)
  opts = opts or {}
  local self = setmetatable({ q = q, steps = {}, rec = false }, Planner)
  local first = q.scope[1].def
  local ds = first.source
  self:note("scan", ("%s (%s, columns %s)"):format(first.name, stream_mod.is_stream(ds) and "stream" or "dataset",
    table.concat(first.columns, ", ")))
  local window = q.window
  local window_join = window and #q.scope > 1
  if window and not window_join then
    if not stream_mod.is_stream(ds) then
      error(grammar.caret(q.text, window.pos, "windows need a stream table (a dataset has no event time flowing)"), 0)
    end
    local ts = q.window.ts
    local saved = q.scope[1].used
    q.scope[1].used = { [ts.ci] = true }
    local gen = self:row_gen(nil)
    gen:emit(("return %s"):format(var(1, ts.ci)))
    q.scope[1].used = saved
    local tsfn = self:step("event_time", ("%s, watermark %s, emit %s"):format(ts.name, tostring(first.watermark or 0),
      opts.emit or "final"), gen:chunk("a, b"))
    ds = ds:event_time(tsfn, { watermark = first.watermark, emit = opts.emit })
  end
  if window_join then
    ds = self:window_join(q.joins[1], window, opts)
  else
    for i = 2, #q.scope do ds = self:join(ds, q.joins[i - 1], i) end
  end
  if q.where then
    local gen = self:row_gen(self.rec and "rec" or nil)
    gen:emit(("return %s == true"):format(gen:truth(q.where)))
    ds = ds:filter(self:step("filter", "WHERE " .. self:text(q.where), gen:chunk(self:params())))
  end

  -- ORDER BY terms that are not output columns travel as hidden fields of the row.
  local hidden = {}
  for _, o in ipairs(q.order) do
    if not o.col then hidden[#hidden + 1] = o; o.hidden = #hidden end
  end

  if q.grouped then
    local slots = slots_of(q)
    -- Several aggregates (or a COUNT(DISTINCT)) outside windows: combine_by_key reads them
    -- from the records, one state per key and partition; else the record's state is a scalar.
    local combine = (not window or window_join) and (#slots > 1 or slots[1].kind == "distinct")
    local kfn = self:step("map", combine and "group key, and the record" or "group key and the record's aggregate state",
      self:keyed_state(slots, combine))
    ds = ds:map(kfn)
    local merge_pure = codegen.load(merge_src(slots, true), "merge")
    local global = #q.group == 0 and not window
    local post_kind
    if window_join then
      post_kind = "joined"
    end
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
      if combine then
        local create_src, merge_value_src = self:combiner_srcs(slots)
        local create = self:step("combine_by_key", "create: a key's state from its first record in a partition", create_src)
        local merge_value = self:step("combine_by_key", "merge_value: a record into the state", merge_value_src)
        local merge = self:step("combine_by_key", "merge_combiners: the partitions' states" .. (global and ", 1 partition" or ""),
          merge_src(slots, false))
        ds = ds:combine_by_key(create, merge_value, merge, global and 1 or nil)
      else
        local merge = self:step("reduce_by_key", "merge states (combined in each partition first)" .. (global and ", 1 partition" or ""),
          merge_src(slots, false))
        ds = ds:reduce_by_key(merge, global and 1 or nil)
      end
      if opts.mode == "running" then
        if not stream_mod.is_stream(ds) then error("SQL: mode = \"running\" needs a stream table", 0) end
        local src = "local merge = ...\nreturn function(values, state)\n  for i = 1, #values do\n    if state == nil then state = values[i] else state = merge(state, values[i]) end\n  end\n  return state\nend"
        self:note("update_state_by_key", "running totals across batches (checkpointed keyed state)")
        self.steps[#self.steps].src = src
        local upd = assert(load(src, "=[sql update_state_by_key]"))(codegen.load(merge_src(slots, false), "merge"))
        ds = ds:update_state_by_key(upd)
      end
    end
    local function post_chunk(gen, params)
      local src = gen:chunk(params)
      if post_kind == "session" then src = "local merge = ...\n" .. src end
      return src
    end
    local function load_post(op, label, src)
      self:note(op, label)
      self.steps[#self.steps].src = src
      return assert(load(src, "=[sql " .. op .. "]"))(merge_pure)
    end
    if global then
      local gen = self:post_gen(slots, post_kind)
      local hv
      if q.having then hv = gen:truth(q.having) end
      local row = self:project(gen, hidden)
      if hv then gen:emit(("if %s ~= true then return {} end"):format(hv)) end
      gen:emit(("return { %s }"):format(row))
      local src = gen:chunk("iter", nil, { "  local k, s = iter()" })
      if post_kind == "session" then src = "local merge = ...\n" .. src end
      ds = ds:map_partitions(load_post("map_partitions", "the aggregates (one row, also for no records)", src))
    else
      if q.having then
        local gen = self:post_gen(slots, post_kind)
        gen:emit(("return %s == true"):format(gen:truth(q.having)))
        ds = ds:filter(load_post("filter", "HAVING " .. self:text(q.having), post_chunk(gen, "k, s")))
      end
      local gen = self:post_gen(slots, post_kind)
      gen:emit(("return %s"):format(self:project(gen, hidden)))
      ds = ds:map(load_post("map", "the output row", post_chunk(gen, "k, s")))
    end
  else
    local gen = self:row_gen(self.rec and "rec" or nil)
    gen:emit(("return %s"):format(self:project(gen, hidden)))
    ds = ds:map(self:step("map", "the output row", gen:chunk(self:params())))
  end

  if q.distinct then
    local to_arr, from_arr = {}, {}
    for i, name in ipairs(q.columns) do
      to_arr[i] = ("(row[%q] == nil and rt.NULL_KEY or row[%q])"):format(name, name)
      from_arr[i] = ("local c%d = v[%d]; if c%d == rt.NULL_KEY then c%d = nil end"):format(i, i, i, i)
      to_arr[#q.columns + i] = ("[%q] = c%d"):format(name, i)
    end
    local head = "local rt = require(\"dstream.sql.runtime\")\n"
    local n = #q.columns
    ds = ds:map(self:step("map", "the row as an array (for distinct)", head .. "return function(row) return { "
      .. table.concat(to_arr, ", ", 1, n) .. " } end"))
    self:note("distinct", "DISTINCT")
    ds = ds:distinct()
    ds = ds:map(self:step("map", "the array as a row", head .. "return function(v)\n  " .. table.concat(from_arr, "\n  ")
      .. "\n  return { " .. table.concat(to_arr, ", ", n + 1, 2 * n) .. " }\nend"))
  end
  if #q.order > 0 then
    local keyfn = self:step("sort_by", "ORDER BY" .. (q.limit and " (into 1 partition, for LIMIT)" or ""), order_key_src(q.order))
    ds = ds:sort_by(keyfn, true, q.limit and 1 or nil)
  end
  if q.limit then
    local take = self:step("map_partitions", "LIMIT " .. q.limit, ("local n = %d\nreturn function(iter)\n  local out = {}\n  for row in iter do\n    if #out >= n then break end\n    out[#out + 1] = row\n  end\n  return out\nend"):format(q.limit))
    if #q.order == 0 then
      ds = ds:map_partitions(take)
      self:note("repartition", "1 partition")
      ds = ds:repartition(1)
    end
    ds = ds:map_partitions(take)
  end
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
