-- dstream/sql/aggregates.lua: GROUP BY's states (methods of plan.lua's Planner, and the
-- helpers build uses). Every aggregate is one or two slots of a state (AVG is a sum and a
-- count): one scalar slot merges with reduce_by_key, several slots (or a COUNT(DISTINCT)) go
-- through combine_by_key, which reads the inputs from the records; post_gen reads keys,
-- finalized aggregates and window bounds after the shuffle.
local codegen = require("dstream.sql.codegen")
local grammar = require("dstream.sql.grammar")

local M = {}

function M.slots_of(q)
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
function M.merge_src(slots, pure)
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

-- Adds the Planner methods of aggregation.
function M.install(Planner)
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
end

return M
