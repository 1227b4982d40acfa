-- dstream/worker/failure.lua: what a failed task says: the input record it was on, the error,
-- the user's frames; and which operator made a record that cannot be sent on. Worker states
-- only; runs after a task failed, never per record.
local ffi = require("ffi")
local format = require("dstream.format")
local protocol = require("dstream.protocol")
local task = require("dstream.worker.task")
local readers = require("dstream.worker.readers").readers
local shipped, current = task.shipped, task.current

local M = {}

-- How an input record is quoted, by the kind of the stage's first operator, for inputs that
-- are not plain values (Kafka's frames: dstream.worker.ops.kafka adds kafka_record): fn(op, a, b) -> text.
M.record_text = {}

-- read_words' line of its word `word` (words[2 * word] is the word's offset in records).
local u32p = ffi.typeof("const uint32_t *")
local function words_line(records, size, words, word)
  local line = ffi.C.ds_words_line_of(records, size, words[2 * word])
  return ffi.string(records + line + 4, ffi.cast(u32p, records + line)[0])
end

-- The input record being processed when the task's coroutine co stopped on an error: found
-- in the reader's frame, which the coroutine keeps.
local function current_record(co, desc)
  for level = 0, 200 do
    local info = debug.getinfo(co, level, "f")
    if not info then return nil end
    if readers[info.func] then
      local a, b, records, size, words, word
      for i = 1, 50 do
        local name, v = debug.getlocal(co, level, i)
        if not name then break end
        if name == "input_record" then a = v elseif name == "input_value" then b = v
        elseif name == "input_records" then records = v elseif name == "input_size" then size = v
        elseif name == "input_words" then words = v elseif name == "input_word" then word = v end
      end
      if a == nil and records and size and words and word then a = words_line(records, size, words, word) end
      local first = desc and desc.ops and desc.ops[1]
      local quote = first and M.record_text[first.kind]
      local ok, text = true, nil
      if quote and (a ~= nil or b ~= nil) then ok, text = pcall(quote, first, a, b) end
      if ok and text then return text end
      if a ~= nil or b ~= nil then return "record " .. format.brief(a, b, 200) end
      return nil
    end
  end
end

-- The message of a task that failed with err: the record, the error, the user's frames (the
-- traceback stops where dstream's worker code begins).
function M.failure_text(co, err, desc)
  local text = type(err) == "string" and err or ("error object: " .. tostring(err))
  local record = current_record(co, desc)
  if record then text = record .. ": " .. text end
  local lines = { text }
  -- LuaJIT has no current line for the top frame of a coroutine that died in a Lua function
  -- (a run-time error there): the message starts with it.
  local where = type(err) == "string" and err:match("^([^\n]-:%d+): ")
  local src = where and where:match("^(.*):%d+$")
  for line in debug.traceback(co, "", 0):gmatch("[^\n]+") do
    if line:find("dstream/worker/", 1, true) then break end
    if src and line:sub(1, 1) == "\t" then
      if line:find("\t" .. src .. ": in ", 1, true) == 1 then
        line = "\t" .. where .. line:sub(#src + 2)
      end
      src = nil -- the top frame only
    end
    lines[#lines + 1] = line
  end
  return table.concat(lines, "\n")
end

-- The first value inside v (a record) that string.buffer cannot encode, as (type, path).
local function find_unsendable(v, path, seen)
  local t = type(v)
  if t == "function" or t == "thread" or t == "userdata" or t == "cdata" then return t, path end
  if t ~= "table" or seen[v] then return nil end
  seen[v] = true
  for k, x in pairs(v) do
    local kt, kp = find_unsendable(k, path .. " (the key of a field)", seen)
    if kt then return kt, kp end
    local field = type(k) == "string" and k:match("^[%a_][%w_]*$") and "." .. k
      or "[" .. format.brief(k, nil, 40) .. "]"
    local xt, xp = find_unsendable(x, path .. field, seen)
    if xt then return xt, xp end
  end
end

-- A record as text for that message: tables as { k = v, ... } up to some depth, values that
-- cannot be sent as <function> etc., cut at `max` characters.
local function record_text(v, max)
  local out, n = {}, 0
  local function put(s)
    n = n + #s
    out[#out + 1] = s
    return n < max
  end
  local function walk(x, depth)
    local t = type(x)
    if t == "string" then return put(string.format("%q", #x > 60 and x:sub(1, 60) .. "..." or x))
    elseif t == "number" or t == "boolean" or t == "nil" then return put(tostring(x))
    elseif t ~= "table" then return put("<" .. t .. ">")
    elseif depth > 3 then return put("{...}") end
    if not put("{ ") then return false end
    local first = true
    for k, y in pairs(x) do
      if not first and not put(", ") then return false end
      first = false
      if type(k) == "string" and k:match("^[%a_][%w_]*$") then
        if not put(k .. " = ") then return false end
      else
        if not put("[") or not walk(k, depth + 1) or not put("] = ") then return false end
      end
      if not walk(y, depth + 1) then return false end
    end
    return put(" }")
  end
  walk(v, 1)
  local s = table.concat(out)
  return #s > max and s:sub(1, max) .. "..." or s
end

-- A stage's output that cannot be encoded (a record holding a function, a coroutine, cdata,
-- userdata): names the operator whose function made it, its line, and the record.
function M.unsendable(err, target, count, pairs_flag, keys, values)
  local record, what, path
  for i = 1, count do
    local seen = {}
    local side = pairs_flag and "its key" or "it"
    what, path = find_unsendable(keys[i], "", seen)
    if not what and pairs_flag then
      side = "its value"
      what, path = find_unsendable(values[i], "", seen)
    end
    if what then
      record = pairs_flag and "(" .. record_text(keys[i], 80) .. ", " .. record_text(values[i], 120)
        .. ")" or record_text(keys[i], 200)
      what = side .. (path == "" and " is a " .. what or " holds a " .. what .. " at " .. path)
      break
    end
  end
  if not what then error(err, 0) end
  local desc, who, fn = current.desc, nil, nil
  if target == protocol.TARGET_ACCUMULATORS then
    who = "an accumulator"
  elseif desc then
    for i = #desc.ops, 1, -1 do
      if desc.ops[i].fn then who, fn = desc.ops[i].kind, desc.ops[i].fn break end
    end
    if not fn and desc.term.fn then who, fn = desc.term.who or desc.term.kind, desc.term.fn end
  end
  local f = fn and shipped(fn)
  local info = type(f) == "function" and debug.getinfo(f, "S")
  local where = info and info.what == "Lua" and (" (the function at " .. info.short_src .. ":"
    .. info.linedefined .. ")") or ""
  error(string.format("%s%s made a record that cannot be sent on: %s (record %s);"
    .. " records may hold strings, numbers, booleans and tables of them: return data, not"
    .. " functions, coroutines, cdata or userdata", who or "an operator", where, what, record), 0)
end

return M
