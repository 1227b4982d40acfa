-- dstream/sql/grammar.lua: the LPeg grammar of dstream's SQL subset; parse(text) returns the
-- AST of one SELECT statement, every node carrying `pos` (its offset in the text), or nil and
-- an error showing the query with a caret under the farthest point the parser reached.
--
-- Only the driver parses: workers run the generated closures and never need lpeg.
local ok_lpeg, lpeg = pcall(require, "lpeg")
if not ok_lpeg then
  error("dstream SQL needs LPeg: install Debian's lua-lpeg (apt-get install lua-lpeg); " ..
    "require \"lpeg\" said: " .. tostring(lpeg), 0)
end
local P, R, S, V, C, Cc, Ct, Cp, Cmt, Cg, Cf =
  lpeg.P, lpeg.R, lpeg.S, lpeg.V, lpeg.C, lpeg.Cc, lpeg.Ct, lpeg.Cp, lpeg.Cmt, lpeg.Cg, lpeg.Cf

local M = {}

local RESERVED = {}
for w in ([[select distinct from where group by having order asc desc limit as and or not is
  null in between like case when then else end cast join inner left outer on true false all]]):gmatch("%a+") do
  RESERVED[w] = true
end

-- The farthest offset a token was tried at: where a syntax error is reported.
local farthest = 1
local function reach(_, i)
  if i > farthest then farthest = i end
  return true
end
local mark = Cmt(P(true), reach)

local comment = P("--") * (1 - P("\n")) ^ 0
local ws = (S(" \t\r\n") + comment) ^ 0
local idchar = R("az", "AZ", "09") + P("_")

local function K(word) -- a case-insensitive keyword
  local p = P(true)
  for ch in word:gmatch(".") do p = p * S(ch:lower() .. ch:upper()) end
  return mark * p * -idchar * ws
end
local function T(tok) return mark * P(tok) * ws end -- a symbol

local function node(tag, fields)
  fields.tag = tag
  return fields
end

local ident_raw = C((R("az", "AZ") + P("_")) * idchar ^ 0)
local ident = mark * (Cmt(ident_raw, function(_, i, name)
  if RESERVED[name:lower()] then return false end
  return i, name
end) + P('"') * C((1 - P('"')) ^ 1) * P('"')) * ws
local pos_ident = Cp() * ident

local digits = R("09") ^ 1
local number = mark * Cp() * C(digits * (P(".") * digits) ^ -1 * (S("eE") * S("+-") ^ -1 * digits) ^ -1
  + P(".") * digits) * ws / function(pos, text) return node("num", { pos = pos, value = tonumber(text) }) end
local string_lit = mark * Cp() * P("'") * C(((1 - P("'")) + P("''")) ^ 0) * P("'") * ws
  / function(pos, text) return node("str", { pos = pos, value = (text:gsub("''", "'")) }) end

local function fold_binary(first, ...) -- left-associative chains of { op, pos, right }
  local e = first
  for i = 1, select("#", ...) do
    local step = select(i, ...)
    e = node("binop", { pos = e.pos, op_pos = step.pos, op = step.op, l = e, r = step.r })
  end
  return e
end
local function ops(list) -- a choice of operator symbols, capturing the canonical op name
  local p
  for _, pair in ipairs(list) do
    local sym, name = pair[1], pair[2]
    local q = (sym:match("^%a") and K(sym) or T(sym)) * Cc(name)
    p = p and p + q or q
  end
  return p
end
local function chain(operand, operators)
  return Ct(Cp() * operators * operand) / function(t) return { pos = t[1], op = t[2], r = t[3] } end
end
local function binary_level(operand, operators)
  return (operand * chain(operand, operators) ^ 0) / fold_binary
end

local cmp_ops = ops { { "<>", "<>" }, { "!=", "<>" }, { "<=", "<=" }, { ">=", ">=" }, { "=", "=" },
  { "==", "=" }, { "<", "<" }, { ">", ">" } }

local grammar = P {
  "statement",
  statement = ws * V"select" * (T(";") ^ -1) * mark * -P(1),
  select = Ct(Cg(Cp(), "pos") * K"select" * Cg(K"distinct" * Cc(true) + K"all" * Cc(false), "distinct") ^ -1
    * Cg(Ct(V"item" * (T(",") * V"item") ^ 0), "items")
    * (K"from" * Cg(V"table_ref", "from") * Cg(Ct(V"join" ^ 0), "joins")) ^ -1
    * (K"where" * Cg(V"expr", "where") * Cg(Cp(), "where_epos")) ^ -1
    * (K"group" * K"by" * Cg(Ct(V"expr" * (T(",") * V"expr") ^ 0), "group")) ^ -1
    * (K"having" * Cg(V"expr", "having") * Cg(Cp(), "having_epos")) ^ -1
    * (K"order" * K"by" * Cg(Ct(V"order_item" * (T(",") * V"order_item") ^ 0), "order")) ^ -1
    * (K"limit" * Cg(mark * Cp() * C(digits) * ws / function(pos, n) return { pos = pos, n = tonumber(n) } end, "limit")) ^ -1)
    / function(t) t.tag = "select"; return t end,
  item = Ct(Cg(Cp(), "pos") * (Cg(T("*") * Cc(true), "star")
      + Cg(ident * T(".") * T("*"), "star_table")
      + Cg(V"expr", "expr") * Cg(Cp(), "epos") * ((K"as" ^ -1) * Cg(ident, "alias")) ^ -1)),
  table_ref = Ct(Cg(Cp(), "pos") * Cg(ident, "name") * ((K"as" ^ -1) * Cg(ident, "alias")) ^ -1),
  join = Ct(Cg(Cp(), "pos") * Cg((K"left" * K"outer" ^ -1) * Cc("left") + (K"inner" ^ -1) * Cc("inner"), "kind")
    * K"join" * Cg(V"table_ref", "table") * K"on" * Cg(V"expr", "on")),
  order_item = Ct(Cg(Cp(), "pos") * Cg(V"expr", "expr") * Cg(K"desc" * Cc(true) + K"asc" * Cc(false), "desc") ^ -1),

  expr = V"or_expr",
  or_expr = binary_level(V"and_expr", ops { { "or", "or" } }),
  and_expr = binary_level(V"not_expr", ops { { "and", "and" } }),
  not_expr = Cp() * K"not" * V"not_expr" / function(pos, e) return node("not", { pos = pos, e = e }) end
    + V"predicate",
  predicate = (V"additive" * V"pred_tail" ^ -1) / function(e, tail)
    if not tail then return e end
    if tail.tag == "binop" then tail.l = e else tail.e = e end
    tail.op_pos, tail.pos = tail.pos, e.pos -- a node starts where its first operand does
    return tail
  end,
  pred_tail = Cp() * K"is" * (K"not" * Cc(true) + Cc(false)) * K"null"
      / function(pos, negated) return node("isnull", { pos = pos, negated = negated }) end
    + Cp() * (K"not" * Cc(true) + Cc(false)) * K"in" * T("(") * Ct(V"expr" * (T(",") * V"expr") ^ 0) * T(")")
      / function(pos, negated, list) return node("in", { pos = pos, negated = negated, list = list }) end
    + Cp() * (K"not" * Cc(true) + Cc(false)) * K"between" * V"additive" * K"and" * V"additive"
      / function(pos, negated, lo, hi) return node("between", { pos = pos, negated = negated, lo = lo, hi = hi }) end
    + Cp() * (K"not" * Cc(true) + Cc(false)) * K"like" * V"additive"
      / function(pos, negated, pattern) return node("like", { pos = pos, negated = negated, pattern = pattern }) end
    + Cp() * cmp_ops * V"additive" / function(pos, op, r) return node("binop", { pos = pos, op = op, r = r }) end,
  additive = binary_level(V"multiplicative", ops { { "+", "+" }, { "-", "-" } }),
  multiplicative = binary_level(V"concat", ops { { "*", "*" }, { "/", "/" }, { "%", "%" } }),
  concat = binary_level(V"unary", ops { { "||", "||" } }),
  unary = Cp() * T("-") * V"unary" / function(pos, e) return node("neg", { pos = pos, e = e }) end
    + T("+") * V"unary" + V"primary",
  primary = number + string_lit
    + Cp() * K"null" / function(pos) return node("null", { pos = pos }) end
    + Cp() * K"true" / function(pos) return node("bool", { pos = pos, value = true }) end
    + Cp() * K"false" / function(pos) return node("bool", { pos = pos, value = false }) end
    + V"case" + V"cast" + V"call"
    + T("(") * V"expr" * T(")")
    + Cp() * ident * T(".") * ident / function(pos, t, name) return node("col", { pos = pos, table = t, name = name }) end
    + Cp() * ident / function(pos, name) return node("col", { pos = pos, name = name }) end,
  case = Cp() * K"case" * (V"expr" + Cc(false))
    * Ct(Ct(K"when" * V"expr" * K"then" * V"expr") ^ 1) * (K"else" * V"expr" + Cc(false)) * K"end"
    / function(pos, operand, whens, else_) return node("case", { pos = pos, operand = operand or nil,
      whens = whens, else_ = else_ or nil }) end,
  cast = Cp() * K"cast" * T("(") * V"expr" * K"as" * ident * T(")")
    / function(pos, e, ty) return node("cast", { pos = pos, e = e, cast_type = ty }) end,
  call = Cp() * ident * T("(") * (
      T("*") * T(")") * Cc("star")
      + K"distinct" * V"expr" * T(")") * Cc("distinct")
      + Ct((V"expr" * (T(",") * V"expr") ^ 0) ^ -1) * T(")") * Cc("args"))
    / function(pos, name, a, how)
      if a == "star" then return node("call", { pos = pos, name = name, star = true, args = {} }) end
      if how == "distinct" then return node("call", { pos = pos, name = name, distinct = true, args = { a } }) end
      return node("call", { pos = pos, name = name, args = a })
    end,
}

-- Line and column (both from 1) of offset pos in text.
function M.line_col(text, pos)
  local line, col = 1, pos
  for nl in text:sub(1, pos - 1):gmatch("()\n") do line, col = line + 1, pos - nl end
  return line, col
end

-- The query with a caret under offset pos: what every SQL error shows.
function M.caret(text, pos, message)
  local line, col = M.line_col(text, pos)
  local src = {}
  for l in (text .. "\n"):gmatch("(.-)\n") do src[#src + 1] = l end
  local out = { ("%s at line %d, column %d:"):format(message, line, col) }
  for i = 1, #src do
    out[#out + 1] = "  " .. src[i]
    if i == line then out[#out + 1] = "  " .. (" "):rep(col - 1) .. "^" end
  end
  return table.concat(out, "\n")
end

function M.parse(text)
  farthest = 1
  local ast = grammar:match(text)
  if ast then return ast end
  local pos = math.min(farthest, #text + 1)
  local near = text:match("^%S+", pos)
  local message = near and ("syntax error near '" .. near:sub(1, 20) .. "'") or "syntax error: the query ends too soon"
  return nil, M.caret(text, pos, message)
end

M.RESERVED = RESERVED
return M
