-- dstream/text.lua: fast tokenising: generic-for iterators that LuaJIT compiles.
--
--   local text = require("dstream.text")
--   for w in text.words("to be  or\tnot") do ... end      -- "to", "be", "or", "not"
--   for f in text.split("a,,b", ",") do ... end           -- "a", "", "b"
--   stream:flat_map(function(line) return text.words(line) end)
--
-- `line:gmatch("%S+")` is not compiled by LuaJIT 2.1 (the trace stops at every word), while
-- these iterators are, with no loop of their own (an inner loop would split the trace): on a
-- line whose only separators are spaces (one strcspn per line tells), `words` finds each word's
-- end with a plain string.find; on other lines it uses the C library's strspn/strcspn through
-- the FFI; `split` uses a plain string.find; each word is cut with string.sub. In a word
-- count they are about 1.5 times as fast as gmatch (docs/performance.md).
--
-- Nothing is allocated per word but the word itself, nor per call once a loop has run to its
-- end: the small table holding a loop's position is reused by the next call. A table goes
-- back for reuse only when its iterator has returned nil (a loop that breaks out early just
-- leaves it to the GC), so generic-for loops, nested or in coroutines, never share one; do
-- not call an iterator again after it has returned nil. (A fresh table per line made the
-- garbage collector a third of a word count's time.)
local ffi = require("ffi")

local find, sub, byte, type, error, tonumber = string.find, string.sub, string.byte, type, error,
  tonumber

ffi.cdef [[
size_t strspn(const char *s, const char *accept);
size_t strcspn(const char *s, const char *reject);
]]
local C = ffi.C
local const_char_p = ffi.typeof("const char *")

-- Whitespace as Lua's %s in the C locale: space, \t, \n, \v, \f, \r.
local SPACE, NOT_SPACE_BAR = " \t\n\v\f\r", "\t\n\v\f\r"

local M = {}
M.SPACE = SPACE -- the bytes words() splits at (the worker's reader of words uses them too)

-- One finished loop's state, ready for the next call (see above).
local spare_words, spare_fields

-- The state of one loop: { string, byte offset (0-based) of the next search }.
local function next_word(st)
  local s, i = st[1], st[2]
  local n = #s
  local p = ffi.cast(const_char_p, s)
  -- strspn stops at a NUL byte, which is part of a word, like any byte that is not a space.
  i = i + tonumber(C.strspn(p + i, SPACE))
  if i >= n then
    st[1], st[2], spare_words = "", 0, st
    return nil
  end
  local j = i + tonumber(C.strcspn(p + i, SPACE))
  -- strcspn also stops at a NUL byte: carry on past NUL bytes inside the string.
  while j < n and p[j] == 0 do j = j + 1 + tonumber(C.strcspn(p + j + 1, SPACE)) end
  st[2] = j
  local w = sub(s, i + 1, j) -- not a tail call: see next_spaced
  return w
end

-- The same on a string whose only separators are spaces and which holds no NUL byte:
-- { string, position (1-based) of the next search }.
local function next_spaced(st)
  local s, i = st[1], st[2]
  local n = #s
  if i <= n and byte(s, i) == 32 then -- more than one space, or a leading one
    i = i + tonumber(C.strspn(ffi.cast(const_char_p, s) + (i - 1), " "))
  end
  if i > n then
    st[1], st[2], spare_words = "", 1, st
    return nil
  end
  local j = find(s, " ", i, true)
  -- The words are bound to a local, not returned by a tail call to sub: a trace that starts
  -- at this function (hot before the caller's loop is compiled) then ends at its return
  -- instead of aborting in the caller's loop ("leaving loop in root trace").
  local w
  if j then
    st[2] = j + 1
    w = sub(s, i, j - 1)
    return w
  end
  st[2] = n + 1
  w = sub(s, i, n)
  return w
end

-- words(s): the runs of non-space characters of s, in order, as a generic-for iterator
-- (like s:gmatch("%S+")). Bytes >= 0x80 (UTF-8) are word characters.
function M.words(s)
  if type(s) ~= "string" then
    error("words: expected a string, got " .. type(s), 2)
  end
  local st = spare_words
  if st then spare_words, st[1] = nil, s else st = { s, 0 } end
  -- strcspn stops at the first tab, newline, CR, VT, FF or NUL: at the end if there is none.
  if tonumber(C.strcspn(ffi.cast(const_char_p, s), NOT_SPACE_BAR)) == #s then
    st[2] = 1
    return next_spaced, st
  end
  st[2] = 0
  return next_word, st
end

-- The state: { string, separator, start of the next field (1-based), or false when done }.
local function next_field(st)
  local s, sep, i = st[1], st[2], st[3]
  if not i then
    st[1], st[2], spare_fields = "", "", st
    return nil
  end
  local a, b = find(s, sep, i, true)
  local f
  if a then
    st[3] = b + 1
    f = sub(s, i, a - 1) -- not a tail call: see next_spaced
    return f
  end
  st[3] = false
  f = sub(s, i)
  return f
end

-- split(s, sep): the fields of s between occurrences of sep, a plain string (not a pattern)
-- of one or more characters, as a generic-for iterator. Empty fields are kept, as in
-- Python's str.split(sep): n separators make n + 1 fields, and "" is one empty field.
-- Without sep, split(s) is words(s).
function M.split(s, sep)
  if type(s) ~= "string" then
    error("split: expected a string, got " .. type(s), 2)
  end
  if sep == nil then return M.words(s) end
  if type(sep) ~= "string" or sep == "" then
    error("split: the separator must be a non-empty string, got "
      .. (sep == "" and "an empty string" or type(sep)), 2)
  end
  local st = spare_fields
  if st then
    spare_fields, st[1], st[2], st[3] = nil, s, sep, 1
    return next_field, st
  end
  return next_field, { s, sep, 1 }
end

return M
