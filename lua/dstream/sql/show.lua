-- dstream/sql/show.lua: rows as a text table, as Spark's Dataset.show() prints them: a header,
-- cells right-aligned, NULL as "null", strings longer than 20 characters cut to 17 and "...",
-- and "only showing top n rows" when the batch has more.
local rt = require("dstream.sql.runtime")

local M = {}

-- Column names of records that are not SQL rows: a table's fields (sorted), an array's or a
-- pair's positions (_1, _2, as Spark names a tuple's), or "value" for scalars.
local function infer_columns(rows)
  local names, seen, width = {}, {}, 0
  for _, r in ipairs(rows) do
    if type(r) == "table" then
      if r[1] ~= nil or next(r) == nil then
        width = math.max(width, #r)
      else
        for k in pairs(r) do
          if type(k) == "string" and not seen[k] then seen[k] = true; names[#names + 1] = k end
        end
      end
    end
  end
  table.sort(names)
  if #names > 0 then return names, false end
  if width > 0 then
    for i = 1, width do names[i] = "_" .. i end
    return names, true
  end
  return { "value" }, "scalar"
end

local function cell(v, truncate)
  local s
  if v == nil then s = "null"
  elseif type(v) == "table" then s = "[" .. #v .. " items]"
  else s = rt.text(v) end
  if truncate and #s > 20 then s = s:sub(1, 17) .. "..." end
  return s
end

-- The text of rows (at most n shown; more = the batch has more).
function M.format(rows, columns, n, more, truncate)
  local positional
  if not columns then columns, positional = infer_columns(rows) end
  local cells, widths = {}, {}
  for c, name in ipairs(columns) do widths[c] = #name end
  for i = 1, math.min(n, #rows) do
    local r, line = rows[i], {}
    for c, name in ipairs(columns) do
      local v
      if positional == "scalar" then v = r
      elseif positional then v = r[c]
      else v = type(r) == "table" and r[name] or nil end
      line[c] = cell(v, truncate)
      if #line[c] > widths[c] then widths[c] = #line[c] end
    end
    cells[#cells + 1] = line
  end
  local sep = {}
  for c = 1, #columns do sep[c] = ("-"):rep(widths[c]) end
  local rule = "+" .. table.concat(sep, "+") .. "+"
  local function row_text(values)
    local out = {}
    for c, v in ipairs(values) do out[c] = (" "):rep(widths[c] - #v) .. v end
    return "|" .. table.concat(out, "|") .. "|"
  end
  local out = { rule, row_text(columns), rule }
  for _, line in ipairs(cells) do out[#out + 1] = row_text(line) end
  out[#out + 1] = rule
  if more then out[#out + 1] = ("only showing top %d row%s"):format(n, n == 1 and "" or "s") end
  return table.concat(out, "\n") .. "\n"
end

-- rdd:show([n [, truncate]]): the first n (default 20) records of the batch.
function M.show(rdd, n, truncate)
  n = n or 20
  if type(n) ~= "number" or n < 0 or n ~= math.floor(n) then
    require("dstream.util").raise("show: n must be a whole number of rows, got " .. tostring(n))
  end
  local rows = rdd:take(n + 1)
  io.stdout:write(M.format(rows, rdd._sql_columns, n, #rows > n, truncate ~= false))
  io.stdout:flush()
end

return M
