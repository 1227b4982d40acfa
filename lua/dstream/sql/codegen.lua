-- dstream/sql/codegen.lua: SQL expressions -> Lua source. Each expression becomes statements
-- that leave its value in a local (NULL is nil), so CASE, AND, OR and COALESCE evaluate only
-- the branches they need, and the stage functions the planner builds are plain Lua closures
-- that LuaJIT compiles into the operators' loops. A stage's source is loaded on the driver
-- (load) and the closure ships to the workers like any user function: its only upvalues are
-- the runtime module (sent by name) and constants.
local M = {}

local Gen = {}
Gen.__index = Gen

-- resolve(node) -> Lua expression of a column; agg(node) -> Lua expression of an aggregate
-- (post-aggregation stages); group(node) -> Lua expression when node is a GROUP BY key.
function M.new(resolve, opts)
  opts = opts or {}
  return setmetatable({ lines = {}, depth = 1, ntmp = 0, consts = {}, resolve = resolve,
    agg = opts.agg, group = opts.group, text = M.sql_text }, Gen)
end

function Gen:emit(line) self.lines[#self.lines + 1] = ("  "):rep(self.depth) .. line end
function Gen:tmp()
  self.ntmp = self.ntmp + 1
  if self.ntmp > 180 then error("SQL: the query is too large to compile (over 180 temporaries in one stage)", 0) end
  return "v" .. self.ntmp
end
function Gen:const(src) -- a constant hoisted out of the closure (a set, a pattern)
  local name = "K" .. (#self.consts + 1)
  self.consts[#self.consts + 1] = ("local %s = %s"):format(name, src)
  return name
end

local function literal(v)
  if type(v) == "number" then
    if v == math.floor(v) and math.abs(v) < 2^53 then return ("%d"):format(v) end
    return ("%.17g"):format(v)
  end
  return ("%q"):format(v)
end
M.literal = literal

local ARITH = { ["+"] = true, ["-"] = true, ["*"] = true }
local CMP = { ["="] = "eq", ["<>"] = "ne", ["<"] = "lt", ["<="] = "le", [">"] = "gt", [">="] = "ge" }
M.CMP = CMP

-- Lua expression of the truth of e (true, false or nil).
function Gen:truth(e)
  local v = self:expr(e)
  if e.type == "boolean" then return v end
  return ("rt.truth(%s)"):format(v)
end

-- Three-valued AND/OR: the right side runs only when the left does not decide.
function Gen:logic(e)
  local v = self:tmp()
  self:emit(("local %s = %s"):format(v, self:truth(e.l)))
  local is_and = e.op == "and"
  self:emit(("if %s ~= %s then"):format(v, is_and and "false" or "true"))
  self.depth = self.depth + 1
  local r = self:tmp()
  self:emit(("local %s = %s"):format(r, self:truth(e.r)))
  if is_and then
    self:emit(("if %s == false then %s = false elseif %s == nil or %s == nil then %s = nil else %s = true end"):format(r, v, v, r, v, v))
  else
    self:emit(("if %s == true then %s = true elseif %s == nil or %s == nil then %s = nil else %s = false end"):format(r, v, v, r, v, v))
  end
  self.depth = self.depth - 1
  self:emit("end")
  return v
end

function Gen:binop(e)
  if e.op == "and" or e.op == "or" then return self:logic(e) end
  local a, b = self:expr(e.l), self:expr(e.r)
  if CMP[e.op] then return ("rt.%s(%s, %s)"):format(CMP[e.op], a, b) end
  if e.op == "||" then return ("rt.concat(%s, %s)"):format(a, b) end
  local v = self:tmp()
  local what = ("%q"):format(self.text(e))
  self:emit(("local %s"):format(v))
  if ARITH[e.op] then
    self:emit(("if %s ~= nil and %s ~= nil then if type(%s) == \"number\" and type(%s) == \"number\" then %s = %s %s %s else %s = rt.arith(%q, %s, %s, %s) end end")
      :format(a, b, a, b, v, a, e.op, b, v, e.op, a, b, what))
  else
    self:emit(("if %s ~= nil and %s ~= nil then %s = rt.%s(%s, %s, %s) end"):format(a, b, v, e.op == "/" and "div" or "mod", a, b, what))
  end
  return v
end

-- A value's expression, kept in a local when it is used more than once.
function Gen:once(e)
  local x = self:expr(e)
  if x:match("^[%w_]+$") then return x end
  local v = self:tmp()
  self:emit(("local %s = %s"):format(v, x))
  return v
end

function Gen:case(e)
  local v = self:tmp()
  self:emit("local " .. v)
  local operand = e.operand and self:once(e.operand)
  local opened = 0
  for i, w in ipairs(e.whens) do
    local cond
    if operand then cond = ("rt.eq(%s, %s) == true"):format(operand, self:expr(w[1]))
    else cond = ("%s == true"):format(self:truth(w[1])) end
    self:emit(("if %s then"):format(cond))
    self.depth = self.depth + 1
    self:emit(("%s = %s"):format(v, self:expr(w[2])))
    self.depth = self.depth - 1
    self:emit("else")
    self.depth = self.depth + 1
    opened = opened + 1
    if i == #e.whens and e.else_ then self:emit(("%s = %s"):format(v, self:expr(e.else_))) end
  end
  for _ = 1, opened do
    self.depth = self.depth - 1
    self:emit("end")
  end
  return v
end

function Gen:in_list(e)
  local x = self:once(e.e)
  local v = self:tmp()
  local all_const = true
  for _, item in ipairs(e.list) do
    if item.tag ~= "num" and item.tag ~= "str" then all_const = false end
  end
  if all_const then
    local keys = {}
    for i, item in ipairs(e.list) do keys[i] = ("[%s] = true"):format(literal(item.value)) end
    local set = self:const("{ " .. table.concat(keys, ", ") .. " }")
    self:emit(("local %s"):format(v))
    self:emit(("if %s ~= nil then %s = %s[%s] == true end"):format(x, v, set, x))
  else
    local null = self:tmp()
    self:emit(("local %s, %s = false, false"):format(v, null))
    for _, item in ipairs(e.list) do
      self:emit(("if %s ~= true then"):format(v))
      self.depth = self.depth + 1
      local r = self:tmp()
      self:emit(("local %s = rt.eq(%s, %s)"):format(r, x, self:expr(item)))
      self:emit(("if %s == true then %s = true elseif %s == nil then %s = true end"):format(r, v, r, null))
      self.depth = self.depth - 1
      self:emit("end")
    end
    self:emit(("if %s == nil or (%s ~= true and %s) then %s = nil end"):format(x, v, null, v))
  end
  if e.negated then self:emit(("if %s ~= nil then %s = not %s end"):format(v, v, v)) end
  return v
end

local FUNCS = { lower = 1, upper = 1, length = 1, trim = 1, abs = 1, floor = 1, ceil = 1, ceiling = 1 }
function Gen:call(e)
  if e.aggregate then return self.agg(e) end
  local name = e.name:lower()
  if FUNCS[name] then
    return ("rt.%s(%s)"):format(name == "ceiling" and "ceil" or name, self:expr(e.args[1]))
  elseif name == "round" or name == "substr" or name == "substring" then
    local args = {}
    for i, a in ipairs(e.args) do args[i] = self:expr(a) end
    return ("rt.%s(%s)"):format(name == "round" and "round" or "substr", table.concat(args, ", "))
  elseif name == "coalesce" then
    local v = self:tmp()
    self:emit(("local %s = %s"):format(v, self:expr(e.args[1])))
    for i = 2, #e.args do
      self:emit(("if %s == nil then"):format(v))
      self.depth = self.depth + 1
      self:emit(("%s = %s"):format(v, self:expr(e.args[i])))
      self.depth = self.depth - 1
      self:emit("end")
    end
    return v
  elseif name == "nullif" then
    local v = self:once(e.args[1])
    local r = self:tmp()
    self:emit(("local %s = %s"):format(r, v))
    self:emit(("if rt.eq(%s, %s) == true then %s = nil end"):format(v, self:expr(e.args[2]), r))
    return r
  end
  error("codegen: unknown function " .. name) -- the analyzer refuses these first
end

function Gen:expr(e)
  if self.group then
    local g = self.group(e)
    if g then return g end
  end
  local tag = e.tag
  if tag == "num" or tag == "str" then return literal(e.value)
  elseif tag == "null" then return "nil"
  elseif tag == "bool" then return tostring(e.value)
  elseif tag == "col" or tag == "wcol" then return self.resolve(e)
  elseif tag == "binop" then return self:binop(e)
  elseif tag == "not" then
    local v = self:tmp()
    self:emit(("local %s = %s"):format(v, self:truth(e.e)))
    self:emit(("if %s ~= nil then %s = not %s end"):format(v, v, v))
    return v
  elseif tag == "neg" then
    local a = self:once(e.e)
    local v = self:tmp()
    self:emit(("local %s"):format(v))
    self:emit(("if %s ~= nil then %s = -rt.number(%s, %q) end"):format(a, v, a, self.text(e)))
    return v
  elseif tag == "isnull" then
    return ("(%s %s nil)"):format(self:expr(e.e), e.negated and "~=" or "==")
  elseif tag == "in" then return self:in_list(e)
  elseif tag == "between" then
    local x = self:once(e.e)
    local lo, hi = self:expr(e.lo), self:expr(e.hi)
    local v = self:tmp()
    self:emit(("local %s = rt.ge(%s, %s)"):format(v, x, lo))
    local w = self:tmp()
    self:emit(("local %s = rt.le(%s, %s)"):format(w, x, hi))
    self:emit(("if %s == false or %s == false then %s = false elseif %s == nil or %s == nil then %s = nil else %s = true end")
      :format(v, w, v, v, w, v, v))
    if e.negated then self:emit(("if %s ~= nil then %s = not %s end"):format(v, v, v)) end
    return v
  elseif tag == "like" then
    local x = self:expr(e.e)
    local v = self:tmp()
    self:emit("local " .. v)
    if e.pattern.tag == "str" then
      -- A constant pattern: a plain comparison when it is a prefix, a suffix, a substring or
      -- the whole text (no _), else an anchored Lua pattern.
      local p = e.pattern.value
      local s = self:tmp()
      self:emit(("local %s = %s"):format(s, x))
      self:emit(("if %s ~= nil then"):format(s))
      self.depth = self.depth + 1
      self:emit(("if type(%s) ~= \"string\" then %s = rt.text(%s) end"):format(s, s, s))
      local lit = p:match("^([^%%_]*)%%$")
      local suffix = p:match("^%%([^%%_]*)$")
      local middle = p:match("^%%([^%%_]*)%%$")
      if not p:find("[%%_]") then
        self:emit(("%s = %s == %q"):format(v, s, p))
      elseif lit then
        self:emit(("%s = sub(%s, 1, %d) == %q"):format(v, s, #lit, lit))
      elseif suffix then
        self:emit(("%s = %s and sub(%s, -%d) == %q"):format(v, #suffix > 0 and ("#" .. s .. " >= " .. #suffix) or "true", s, #suffix, suffix))
      elseif middle then
        self:emit(("%s = find(%s, %q, 1, true) ~= nil"):format(v, s, middle))
      else
        local rt = require("dstream.sql.runtime")
        local pat = self:const(("%q"):format(rt.like_pattern(p)))
        self:emit(("%s = find(%s, %s) ~= nil"):format(v, s, pat))
      end
      self.depth = self.depth - 1
      self:emit("end")
    else
      self:emit(("%s = rt.like(%s, %s)"):format(v, x, self:expr(e.pattern)))
    end
    if e.negated then self:emit(("if %s ~= nil then %s = not %s end"):format(v, v, v)) end
    return v
  elseif tag == "case" then return self:case(e)
  elseif tag == "cast" then return ("rt.cast(%s, %q)"):format(self:expr(e.e), e.cast_to)
  elseif tag == "call" then return self:call(e)
  end
  error("codegen: unknown expression " .. tostring(tag))
end

-- SQL text of an expression (for labels and runtime errors), rebuilt from the AST.
local PREC = { ["or"] = 1, ["and"] = 2, ["="] = 4, ["<>"] = 4, ["<"] = 4, ["<="] = 4, [">"] = 4, [">="] = 4,
  ["+"] = 5, ["-"] = 5, ["*"] = 6, ["/"] = 6, ["%"] = 6, ["||"] = 7 }
function M.sql_text(e, outer)
  local t = e.tag
  local function wrap(s, p) if outer and p < outer then return "(" .. s .. ")" end return s end
  if t == "num" then return literal(e.value)
  elseif t == "str" then return "'" .. e.value:gsub("'", "''") .. "'"
  elseif t == "null" then return "NULL"
  elseif t == "bool" then return e.value and "TRUE" or "FALSE"
  elseif t == "col" then return (e.table and (e.table .. ".") or "") .. e.name
  elseif t == "wcol" then return e.window
  elseif t == "binop" then
    local p = PREC[e.op]
    return wrap(M.sql_text(e.l, p) .. " " .. (e.op == "and" and "AND" or e.op == "or" and "OR" or e.op) .. " " .. M.sql_text(e.r, p + 1), p)
  elseif t == "not" then return wrap("NOT " .. M.sql_text(e.e, 3), 3)
  elseif t == "neg" then return "-" .. M.sql_text(e.e, 8)
  elseif t == "isnull" then return wrap(M.sql_text(e.e, 5) .. (e.negated and " IS NOT NULL" or " IS NULL"), 4)
  elseif t == "in" then
    local items = {}
    for i, x in ipairs(e.list) do items[i] = M.sql_text(x) end
    return wrap(M.sql_text(e.e, 5) .. (e.negated and " NOT IN (" or " IN (") .. table.concat(items, ", ") .. ")", 4)
  elseif t == "between" then
    return wrap(("%s %sBETWEEN %s AND %s"):format(M.sql_text(e.e, 5), e.negated and "NOT " or "", M.sql_text(e.lo, 5), M.sql_text(e.hi, 5)), 4)
  elseif t == "like" then
    return wrap(("%s %sLIKE %s"):format(M.sql_text(e.e, 5), e.negated and "NOT " or "", M.sql_text(e.pattern, 5)), 4)
  elseif t == "case" then
    local parts = { "CASE" }
    if e.operand then parts[#parts + 1] = M.sql_text(e.operand) end
    for _, w in ipairs(e.whens) do parts[#parts + 1] = "WHEN " .. M.sql_text(w[1]) .. " THEN " .. M.sql_text(w[2]) end
    if e.else_ then parts[#parts + 1] = "ELSE " .. M.sql_text(e.else_) end
    parts[#parts + 1] = "END"
    return table.concat(parts, " ")
  elseif t == "cast" then return ("CAST(%s AS %s)"):format(M.sql_text(e.e), e.cast_type)
  elseif t == "call" then
    if e.star then return e.name .. "(*)" end
    local args = {}
    for i, x in ipairs(e.args) do args[i] = M.sql_text(x) end
    return e.name .. "(" .. (e.distinct and "DISTINCT " or "") .. table.concat(args, ", ") .. ")"
  end
  return "?"
end

-- The source of a chunk returning one function `function(params) body end`, with the
-- hoisted constants as its upvalues.
function Gen:chunk(params, body_lines, before)
  local out = { 'local rt = require("dstream.sql.runtime")', "local find, sub, type = string.find, string.sub, type" }
  for _, c in ipairs(self.consts) do out[#out + 1] = c end
  out[#out + 1] = ("return function(%s)"):format(params)
  for _, l in ipairs(before or {}) do out[#out + 1] = l end
  for _, l in ipairs(body_lines or self.lines) do out[#out + 1] = l end
  out[#out + 1] = "end"
  return table.concat(out, "\n")
end

-- Loads generated source into a closure (on the driver; the closure then ships).
-- Values given after name are the chunk's `...` (what it keeps as upvalues).
function M.load(src, name, ...)
  local chunk, err = load(src, "=[sql " .. name .. "]")
  if not chunk then error("SQL codegen produced bad Lua (" .. name .. "): " .. err .. "\n" .. src, 0) end
  return chunk(...)
end

return M
