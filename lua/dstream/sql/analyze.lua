-- dstream/sql/analyze.lua: names, aggregates and types of a parsed SELECT. It resolves every
-- column against the tables in FROM/JOIN (an unknown table or column names the close ones),
-- marks aggregate calls and GROUP BY keys, finds a window (TUMBLE/HOP/SESSION) in GROUP BY,
-- infers the simple types it can (number, text, boolean) to refuse type errors before
-- anything runs, and names the output columns. Returns a query description, or raises an
-- error that shows the query with a caret.
local grammar = require("dstream.sql.grammar")

local M = {}

local SCALAR = { -- name = { min args, max args, result type }
  lower = { 1, 1, "text" }, upper = { 1, 1, "text" }, length = { 1, 1, "number" }, trim = { 1, 1, "text" },
  substr = { 2, 3, "text" }, substring = { 2, 3, "text" }, abs = { 1, 1, "number" },
  round = { 1, 2, "number" }, floor = { 1, 1, "number" }, ceil = { 1, 1, "number" },
  ceiling = { 1, 1, "number" }, coalesce = { 1, 99, "any" }, nullif = { 2, 2, "any" },
}
local AGGREGATE = { count = true, sum = true, avg = true, min = true, max = true }
local WINDOW = { tumble = 2, hop = 3, session = 2 }
local CAST_TYPES = { int = "integer", integer = "integer", bigint = "integer", smallint = "integer",
  real = "real", double = "real", float = "real", decimal = "real", numeric = "real",
  text = "text", varchar = "text", string = "text", char = "text", boolean = "boolean", bool = "boolean" }

-- Edit distance, for "did you mean".
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end
function M.close_names(name, candidates)
  local out = {}
  name = name:lower()
  for _, c in ipairs(candidates) do
    local lc = c:lower()
    if distance(name, lc) <= math.max(1, math.floor(#name / 2)) or lc:find(name, 1, true) or name:find(lc, 1, true) then
      out[#out + 1] = c
    end
  end
  return out
end
local function suggestion(name, candidates, what)
  local close = M.close_names(name, candidates)
  if #close > 0 then return ("; did you mean %s?"):format("'" .. table.concat(close, "', '") .. "'") end
  if #candidates == 0 then return "" end
  return ("; the %s are %s"):format(what, "'" .. table.concat(candidates, "', '") .. "'")
end
M.suggestion = suggestion

-- The interval of TUMBLE/HOP/SESSION in ms: '10 seconds', '1 minute', '500 ms', '2s'.
local UNITS = { ms = 1, millisecond = 1, milliseconds = 1, s = 1000, sec = 1000, second = 1000,
  seconds = 1000, m = 60000, min = 60000, minute = 60000, minutes = 60000, h = 3600000,
  hour = 3600000, hours = 3600000 }
local function interval_ms(text)
  local n, unit = tostring(text):lower():match("^%s*([%d%.]+)%s*(%a*)%s*$")
  n = tonumber(n)
  local u = UNITS[unit ~= "" and unit or "s"]
  if n and u and n > 0 then return n * u end
end

function M.analyze(ast, text, tables)
  local function fail(pos, msg) error(grammar.caret(text, pos or 1, msg), 0) end
  local function source_text(e, epos)
    local s = text:sub(e.pos, (epos or e.epos or e.pos) - 1):gsub("%s+$", "")
    return s
  end

  -- Tables of FROM and JOIN.
  local scope = {}
  local q = { text = text, ast = ast, scope = scope, aggregates = {}, group = {} }
  local registered = {}
  for name in pairs(tables) do registered[#registered + 1] = tables[name].name end
  table.sort(registered)
  local function add_table(ref)
    local def = tables[ref.name:lower()]
    if not def then
      fail(ref.pos, ("unknown table '%s'%s (make one with stream:to_table(name, columns) or rdd:to_table(name, columns))")
        :format(ref.name, suggestion(ref.name, registered, "tables")))
    end
    local alias = (ref.alias or ref.name):lower()
    for _, t in ipairs(scope) do
      if t.alias == alias then fail(ref.pos, ("table name '%s' used twice: give one an alias (FROM t AS a)"):format(alias)) end
    end
    local t = { def = def, alias = alias, index = #scope + 1, used = {} }
    scope[#scope + 1] = t
    return t
  end
  if not ast.from then fail(ast.pos, "a SELECT needs FROM: dstream's SQL reads tables (registered with to_table)") end
  add_table(ast.from)
  for _, j in ipairs(ast.joins or {}) do j.t = add_table(j.table) end

  local function all_columns()
    local out = {}
    for _, t in ipairs(scope) do
      for _, c in ipairs(t.def.columns) do out[#out + 1] = #scope > 1 and (t.alias .. "." .. c) or c end
    end
    return out
  end
  local function resolve(e)
    local name = e.name:lower()
    local found
    for _, t in ipairs(scope) do
      if not e.table or e.table:lower() == t.alias then
        for ci, c in ipairs(t.def.columns) do
          if c:lower() == name then
            if found then fail(e.pos, ("column '%s' is ambiguous: it is in '%s' and '%s'; write %s.%s")
              :format(e.name, found.t.alias, t.alias, found.t.alias, e.name)) end
            found = { t = t, ci = ci }
          end
        end
      end
    end
    if not found then
      if e.table then
        local known = false
        for _, t in ipairs(scope) do if t.alias == e.table:lower() then known = true end end
        if not known then
          local aliases = {}
          for i, t in ipairs(scope) do aliases[i] = t.alias end
          fail(e.pos, ("unknown table '%s' in %s.%s%s"):format(e.table, e.table, e.name, suggestion(e.table, aliases, "tables of this query")))
        end
      end
      fail(e.pos, ("unknown column '%s'%s"):format(e.name, suggestion(e.name, all_columns(), "columns")))
    end
    e.ti, e.ci = found.t.index, found.ci
    found.t.used[found.ci] = true
    e.type = "any"
  end

  -- Canonical text of an expression, to match SELECT expressions with GROUP BY keys.
  local function key_of(e)
    if type(e) ~= "table" then return tostring(e) end
    if e.tag == "col" and e.ti then return ("col:%d:%d"):format(e.ti, e.ci) end
    local parts = {}
    for k, v in pairs(e) do
      if not tostring(k):match("pos$") and k ~= "type" and k ~= "aggregate" and k ~= "slot" and k ~= "table" and k ~= "name" or (e.tag ~= "col" and (k == "name")) then
        parts[#parts + 1] = tostring(k) .. "=" .. key_of(v)
      end
    end
    table.sort(parts)
    return "{" .. table.concat(parts, ",") .. "}"
  end
  q.key_of = key_of

  local function describe(e) return "'" .. source_text(e, e.epos or e.pos + 1) .. "'" end

  local function need(e, want, ctx)
    if e.type ~= "any" and e.type ~= nil and e.type ~= want and not (want == "number" and e.type == "boolean") then
      fail(e.pos, ("type error: %s needs a %s, and %s is a %s"):format(ctx, want, e.tag == "str" and ("'" .. e.value .. "'") or "this expression", e.type))
    end
  end

  local in_aggregate = false
  local allow_aggregates = false
  local function walk(e, where)
    local tag = e.tag
    if tag == "num" then e.type = "number"
    elseif tag == "str" then e.type = "text"
    elseif tag == "bool" then e.type = "boolean"
    elseif tag == "null" then e.type = "any"
    elseif tag == "col" then resolve(e)
    elseif tag == "binop" then
      walk(e.l, where); walk(e.r, where)
      if e.op == "and" or e.op == "or" or require("dstream.sql.codegen").CMP[e.op] then
        e.type = "boolean"
      elseif e.op == "||" then e.type = "text"
      else
        need(e.l, "number", "'" .. e.op .. "'")
        need(e.r, "number", "'" .. e.op .. "'")
        e.type = "number"
      end
    elseif tag == "not" then walk(e.e, where); e.type = "boolean"
    elseif tag == "neg" then walk(e.e, where); need(e.e, "number", "'-'"); e.type = "number"
    elseif tag == "isnull" then walk(e.e, where); e.type = "boolean"
    elseif tag == "in" then walk(e.e, where); for _, x in ipairs(e.list) do walk(x, where) end; e.type = "boolean"
    elseif tag == "between" then walk(e.e, where); walk(e.lo, where); walk(e.hi, where); e.type = "boolean"
    elseif tag == "like" then walk(e.e, where); walk(e.pattern, where); need(e.pattern, "text", "LIKE's pattern"); e.type = "boolean"
    elseif tag == "case" then
      if e.operand then walk(e.operand, where) end
      for _, w in ipairs(e.whens) do walk(w[1], where); walk(w[2], where) end
      if e.else_ then walk(e.else_, where) end
      e.type = "any"
    elseif tag == "cast" then
      walk(e.e, where)
      e.cast_to = CAST_TYPES[(e.cast_type or ""):lower()]
      if not e.cast_to then
        local names = {}
        for k in pairs(CAST_TYPES) do names[#names + 1] = k end
        table.sort(names)
        fail(e.pos, ("CAST to an unknown type '%s' (known: %s)"):format(e.cast_type, table.concat(names, ", ")))
      end
      e.type = (e.cast_to == "integer" or e.cast_to == "real") and "number" or e.cast_to
    elseif tag == "call" then
      local name = e.name:lower()
      if AGGREGATE[name] then
        if not allow_aggregates then fail(e.pos, ("aggregate %s() is not allowed in %s"):format(name:upper(), where)) end
        if in_aggregate then fail(e.pos, "an aggregate cannot be nested in another aggregate") end
        if e.star and name ~= "count" then fail(e.pos, name:upper() .. "(*) is not SQL: only COUNT(*) takes *") end
        if not e.star and #e.args ~= 1 then fail(e.pos, ("%s() takes one argument, got %d"):format(name:upper(), #e.args)) end
        in_aggregate = true
        for _, a in ipairs(e.args) do walk(a, where) end
        in_aggregate = false
        if name == "sum" or name == "avg" then need(e.args[1], "number", name:upper() .. "()") end
        e.aggregate = true
        e.type = (name == "count" or name == "sum" or name == "avg") and "number" or "any"
        local k = key_of(e)
        if not q.aggregates[k] then
          q.aggregates[#q.aggregates + 1] = e
          q.aggregates[k] = e
        end
        e.agg_index = q.aggregates[k] == e and #q.aggregates or q.aggregates[k].agg_index
      elseif WINDOW[name] then
        fail(e.pos, ("%s(...) is a window: it goes in GROUP BY (GROUP BY %s(ts, '10 seconds'), ...); SELECT window_start, window_end")
          :format(name:upper(), name:upper()))
      elseif SCALAR[name] then
        local spec = SCALAR[name]
        if e.star or e.distinct or #e.args < spec[1] or #e.args > spec[2] then
          local want = spec[1] == spec[2] and tostring(spec[1]) or (spec[2] == 99 and (spec[1] .. " or more") or (spec[1] .. " to " .. spec[2]))
          fail(e.pos, ("%s() takes %s argument%s, got %d"):format(name, want, want == "1" and "" or "s", #e.args))
        end
        for _, a in ipairs(e.args) do walk(a, where) end
        if name == "abs" or name == "round" or name == "floor" or name == "ceil" or name == "ceiling" then
          need(e.args[1], "number", name .. "()")
        end
        e.type = spec[3]
      else
        local names = {}
        for k in pairs(SCALAR) do names[#names + 1] = k end
        for k in pairs(AGGREGATE) do names[#names + 1] = k end
        table.sort(names)
        fail(e.pos, ("unknown function '%s'%s"):format(e.name, suggestion(e.name, names, "functions")))
      end
    end
  end

  -- GROUP BY: keys, and at most one window.
  local window_cols = {}
  -- GROUP BY 2 and GROUP BY alias name a SELECT item (as SQLite and Spark read them); a
  -- column of the tables wins over an alias.
  local function item_named(name)
    local lname = name:lower()
    for _, t in ipairs(scope) do
      for _, c in ipairs(t.def.columns) do if c:lower() == lname then return nil end end
    end
    for _, it in ipairs(ast.items) do
      if it.alias and it.alias:lower() == lname then return it end
    end
  end
  for gi, g in ipairs(ast.group or {}) do
    if g.tag == "num" then
      local it = ast.items[g.value]
      if g.value ~= math.floor(g.value) or not it or it.star or it.star_table then
        fail(g.pos, ("GROUP BY %s: not a position of the SELECT list (1 to %d, and not *)"):format(tostring(g.value), #ast.items))
      end
      g = it.expr
      ast.group[gi] = g
    elseif g.tag == "col" and not g.table and item_named(g.name) then
      g = item_named(g.name).expr
      ast.group[gi] = g
    end
    local wname = g.tag == "call" and g.name:lower()
    if wname and WINDOW[wname] then
      if q.window then fail(g.pos, "only one window (TUMBLE, HOP or SESSION) per GROUP BY") end
      if #g.args ~= WINDOW[wname] then
        fail(g.pos, ("%s takes %d arguments: %s"):format(wname:upper(), WINDOW[wname],
          wname == "hop" and "HOP(ts, '30 seconds', '10 seconds') (the window's length, then its slide)" or wname:upper() .. "(ts, '10 seconds')"))
      end
      local ts = g.args[1]
      if ts.tag ~= "col" then fail(ts.pos, wname:upper() .. "'s first argument is the table's event-time column") end
      walk(ts, "GROUP BY")
      local t = scope[ts.ti]
      local et = t.def.event_time
      if not et or et:lower() ~= t.def.columns[ts.ci]:lower() then
        fail(ts.pos, ("%s needs the table's event time: make it with to_table(name, columns, { event_time = \"%s\", watermark = \"5s\" })")
          :format(wname:upper(), t.def.columns[ts.ci]))
      end
      local sizes = {}
      for i = 2, #g.args do
        local a = g.args[i]
        sizes[i - 1] = a.tag == "str" and interval_ms(a.value) or a.tag == "num" and a.value * 1000 or nil
        if not sizes[i - 1] then fail(a.pos, "an interval is a string such as '10 seconds', '1 minute' or '500 ms'") end
      end
      q.window = { kind = wname, len = sizes[1], slide = wname == "hop" and sizes[2] or sizes[1], gap = sizes[1], ts = ts, pos = g.pos }
      window_cols.window_start, window_cols.window_end = true, true
    else
      walk(g, "GROUP BY")
      q.group[#q.group + 1] = g
      q.group[key_of(g)] = #q.group
    end
  end

  -- A column named window_start/window_end means the window's bound when there is a window.
  local function bind_window_cols(e)
    if type(e) ~= "table" then return end
    if e.tag == "col" and not e.table and window_cols[e.name:lower()] then
      e.tag, e.window = "wcol", e.name:lower()
      e.type = "number"
      return
    end
    for k, v in pairs(e) do if type(v) == "table" and k ~= "t" then bind_window_cols(v) end end
  end

  if ast.where then ast.where.epos = ast.where_epos; walk(ast.where, "WHERE") end
  for _, j in ipairs(ast.joins or {}) do walk(j.on, "ON") end

  -- SELECT items (* expanded), named: alias, column name, or the expression's text.
  local items, names = {}, {}
  local function add_item(expr, name)
    local n, base = name, name
    local i = 1
    while names[n:lower()] do i = i + 1; n = base .. "_" .. i end
    names[n:lower()] = true
    items[#items + 1] = { expr = expr, name = n }
  end
  allow_aggregates = true
  for _, it in ipairs(ast.items) do
    if it.star or it.star_table then
      local found = false
      for _, t in ipairs(scope) do
        if it.star or t.alias == it.star_table:lower() then
          found = true
          for ci, c in ipairs(t.def.columns) do
            local e = { tag = "col", pos = it.pos, name = c, table = t.alias, ti = t.index, ci = ci, type = "any" }
            t.used[ci] = true
            add_item(e, names[c:lower()] and (t.alias .. "." .. c) or c)
          end
        end
      end
      if not found then fail(it.pos, ("unknown table '%s' in %s.*"):format(it.star_table, it.star_table)) end
    else
      bind_window_cols(it.expr)
      walk(it.expr, "SELECT")
      it.expr.epos = it.epos
      add_item(it.expr, it.alias or (it.expr.tag == "col" and it.expr.name) or (it.expr.tag == "wcol" and it.expr.window)
        or source_text(it.expr, it.epos))
    end
  end
  q.items = items
  -- HAVING may name an output column by its alias (as SQLite and Spark allow), when no table
  -- has a column of that name.
  local function alias_subst(e)
    if type(e) ~= "table" then return e end
    if e.tag == "col" and not e.table then
      local lname = e.name:lower()
      for _, t in ipairs(scope) do
        for _, c in ipairs(t.def.columns) do if c:lower() == lname then return e end end
      end
      for _, it in ipairs(items) do
        if it.name:lower() == lname then return it.expr end
      end
      return e
    end
    for k, v in pairs(e) do if type(v) == "table" and k ~= "t" then e[k] = alias_subst(v) end end
    return e
  end
  if ast.having then
    local epos = ast.having_epos
    ast.having = alias_subst(ast.having)
    if ast.having.epos == nil then ast.having.epos = epos end
    bind_window_cols(ast.having)
    walk(ast.having, "HAVING")
  end
  -- ORDER BY: an output column's name or position, or an expression.
  q.order = {}
  for _, o in ipairs(ast.order or {}) do
    local e, col = o.expr, nil
    if e.tag == "num" and e.value == math.floor(e.value) then
      if e.value < 1 or e.value > #items then fail(e.pos, ("ORDER BY %d: the SELECT has %d columns"):format(e.value, #items)) end
      col = items[e.value].name
    elseif e.tag == "col" and not e.table then
      for _, it in ipairs(items) do if it.name:lower() == e.name:lower() then col = it.name end end
    end
    if not col then
      bind_window_cols(e)
      walk(e, "ORDER BY")
      for _, it in ipairs(items) do if key_of(it.expr) == key_of(e) then col = it.name end end
    end
    q.order[#q.order + 1] = { col = col, expr = e, desc = o.desc == true }
  end
  allow_aggregates = false

  q.grouped = #q.group > 0 or #q.aggregates > 0 or q.window ~= nil
  if (q.grouped) then
    -- Outside aggregates, a grouped query may use only GROUP BY keys (and the window bounds).
    local function check(e, where)
      if type(e) ~= "table" then return end
      if e.aggregate or e.tag == "wcol" then return end
      if q.group[key_of(e)] then return end
      if e.tag == "col" then
        fail(e.pos, ("column '%s' must be in GROUP BY or inside an aggregate (COUNT, SUM, AVG, MIN, MAX) in %s"):format(e.name, where))
      end
      for k, v in pairs(e) do if type(v) == "table" and k ~= "t" then check(v, where) end end
    end
    for _, it in ipairs(items) do check(it.expr, "SELECT") end
    if ast.having then check(ast.having, "HAVING") end
    for _, o in ipairs(q.order) do if not o.col then check(o.expr, "ORDER BY") end end
  elseif ast.having then
    fail(ast.having.pos, "HAVING needs GROUP BY or an aggregate")
  end
  if next(window_cols) == nil then
    for _, it in ipairs(items) do
      if it.expr.tag == "wcol" then fail(it.expr.pos, it.expr.window .. " needs GROUP BY TUMBLE/HOP/SESSION") end
    end
  end
  if ast.distinct then
    for _, o in ipairs(q.order) do
      if not o.col then fail(o.expr.pos, "with SELECT DISTINCT, ORDER BY terms must be output columns") end
    end
  end
  q.distinct = ast.distinct == true
  q.limit = ast.limit and ast.limit.n
  q.joins = ast.joins or {}
  q.where = ast.where
  q.having = ast.having
  q.columns = {}
  for i, it in ipairs(items) do q.columns[i] = it.name end
  return q
end

return M
