-- dstream/worker/readers.lua: the per-record loops of a task, over C slices read through the
-- FFI, integer ranges and state; the JIT compiles each loop together with the user's closures.
-- Worker states only.
local ffi = require("ffi")
local buffer = require("string.buffer")
local cdefs = require("dstream.worker.cdefs")
local not_expansion = require("dstream.worker.operators").not_expansion
local type, tonumber = type, tonumber
local u8p, u32p = ffi.typeof("const uint8_t *"), ffi.typeof("const uint32_t *")
local ffi_string, ffi_cast = ffi.string, ffi.cast
local FMT_LINES = cdefs.FMT_LINES

-- `input_record` is the name the error handler (dstream.worker.failure) looks for.

-- The inputs in pull form: pull(st) gives the next input record (and value), nil after the
-- last; st holds the position. Plain functions and a state table, not closures made per
-- slice: a side trace that follows the end of one slice into the next one would abort at the
-- closure's creation (FNEW is not compiled).
local function pull_line(st) -- st: { records (const uint8_t *), bytes, offset }
  local off = st[3]
  if off >= st[2] then return nil end
  local p = st[1]
  local len = ffi_cast(u32p, p + off)[0]
  st[3] = off + 4 + len
  local line = ffi_string(p + off + 4, len)
  return line
end

local function pull_value(st) -- st: { values, count, index }
  local i = st[3]
  if i >= st[2] then return nil end
  i = i + 1
  st[3] = i
  return st[1][i]
end

local function pull_pair(st) -- st: { keys, count, index, values }
  local i = st[3]
  if i >= st[2] then return nil end
  i = i + 1
  st[3] = i
  return st[1][i], st[4][i]
end

local function pull_int(st) -- st: { last integer given, last integer of the range }
  local i = st[1]
  if i >= st[2] then return nil end
  st[1] = i + 1
  return i + 1
end

-- n records of a bucket's arrays (values nil: single records) in pull form: pull, st.
local function pull_arrays(keys, values, n)
  if values then return pull_pair, { keys, n, 0, values } end
  return pull_value, { keys, n, 0 }
end

-- A slice in pull form: pull, st.
local reader = buffer.new()
local function pull_slice(s)
  if s.format == FMT_LINES then return pull_line, { ffi_cast(u8p, s.data), tonumber(s.len), 0 } end
  reader:set(s.data, s.len)
  local arrays = reader:decode()
  return pull_arrays(arrays[1], arrays[2], tonumber(s.count))
end

-- The reader of a stage that does not start with flat_map. side: 1 or 2 for the left or
-- right input of a two-sided stage (cogroup, join).
local function read_all(pull, st, push, side)
  while true do
    local input_record, input_value = pull(st)
    if input_record == nil and input_value == nil then return end -- nil, v: a nil key
    push(input_record, input_value, side)
  end
end

-- dstream.text.words over lines in C memory (a stage that starts with `flat_map(text.words)`
-- on a text_file or a socket's lines): its words are cut from the bytes, and the line never
-- becomes a Lua string. A string per line cost a third of a word count: LuaJIT interns every
-- string (hash, probe of the VM's string table, a node put first in its chain), so the lines,
-- all different, stood in front of the words in the chains each word's lookup walks, and the
-- collector swept them after (10 M words, bare LuaJIT: 2.4-3.4 s of CPU with a string per
-- line, 1.4-1.9 s without). The same words as text.words: runs of bytes other than
-- text.SPACE's (a NUL byte belongs to its word).
-- C cuts up to WORDS_MAX words per call (runtime/ds_words.c: one FFI call per 1024 words,
-- none per record), so the loop here is one flat loop over their offsets. With the byte
-- loops nested in the word loop here, which loop got its trace first varied (an inner byte
-- loop as the root trace, the word loop's code in side traces, or an abort: "inner loop in
-- root trace"), and the bytes cost more in Lua than in C (cachegrind, 2 M words, 1 worker:
-- word count 1.123 -> 0.984 G instructions, top-10 words 2.44 -> 2.14 G).
-- The failing word's line is found from input_records, input_size, input_words and
-- input_word (dstream.worker.failure reads them: input_word is read after push, so it is
-- restored when a trace exits there).
local text = require("dstream.text")
local words = text.words
local is_space = ffi.new("uint8_t[256]") -- the separators, for C
for i = 1, #text.SPACE do is_space[text.SPACE:byte(i)] = 1 end
local C = ffi.C
local WORDS_MAX = 1024
local word_at = ffi.new("uint32_t[?]", 2 * WORDS_MAX)
local words_pos = ffi.new("ds_words_pos")
-- This VM's string table: ds_words_cut prefetches what interning each word will look at
-- (NULL without dstream's LuaJIT: no prefetch; what it saves: docs/performance.md, change 25).
-- A pointer cdata, not the light userdata core gives: a compiled FFI call cannot convert a
-- light userdata (NYI), and the slice loop's trace aborted.
local STRINGS = ffi.cast("void *", require("dstream.core").string_table)

local function read_words(st, push)
  local input_records, input_size, input_words = st[1], st[2], word_at
  words_pos.pos, words_pos.line_end = st[3], st[3]
  while true do
    local count = tonumber(C.ds_words_cut(input_records, input_size, words_pos, is_space,
      input_words, WORDS_MAX, STRINGS))
    local input_word = 0
    while input_word < count do
      push(ffi_string(input_records + input_words[2 * input_word], input_words[2 * input_word + 1]))
      input_word = input_word + 1
    end
    if count < WORDS_MAX then
      st[3] = input_size
      return
    end
  end
end

-- A stage that starts with flat_map (a word count's `text_file(p):flat_map(words)`) runs one
-- loop over the input records and the records each expands to, instead of a loop per input
-- record inside flat_map's push: that loop ends with every line, and LuaJIT records a loop's
-- trace from the iteration its hot counter trips at, which on a line of ten words is the
-- last one time in ten (abort: "leaving loop in root trace"). Each abort delays the loop's
-- trace; meanwhile the functions it calls per word get hot and start traces of their own,
-- whose side traces return into the loop while it has no trace and abort too (loop unroll
-- limit), until their exits are left to the interpreter. This loop ends once per slice.
-- pull(st) gives the next input record (and value), nil after the last.
-- The iterator's first call is made where the record is read, so that its control variable
-- is never nil where the loop begins again (a slot whose type changes there makes the side
-- traces of the refill fail to link back: "persistent type instability"); for the same
-- reason `iterating` is a number, not a boolean (true and false are two types to a trace).
local function read_flat(pull, st, f, push)
  if f == words and pull == pull_line then
    read_words(st, push)
    return
  end
  local input_record, input_value
  local r, s, c = nil, nil, nil -- the current record's iterator (r a function) or array
  local iterating, i, n = 0, 0, 0
  while true do
    if iterating == 1 then
      local x, y = r(s, c)
      if x == nil then
        iterating = 0
      else
        c = x
        push(x, y)
      end
    elseif i < n then
      i = i + 1
      push(r[i])
    else
      input_record, input_value = pull(st)
      if input_record == nil and input_value == nil then return end -- nil, v: a nil key
      local fr, fs, fc = f(input_record, input_value)
      local tr = type(fr)
      if tr == "function" then
        local x, y = fr(fs, fc)
        if x ~= nil then
          r, s, c, iterating = fr, fs, x, 1
          push(x, y)
        end
      elseif tr == "table" then
        r, i, n = fr, 0, #fr
      elseif fr ~= nil then
        not_expansion("flat_map", fr)
      end
    end
  end
end

local readers = { [read_all] = true, [read_flat] = true, [read_words] = true }

-- A block of a text_file, {path, start, end}, read into C memory (ds_text_file_read) in pull
-- form: pull, st, records. One block is held at a time; release_text_block frees it, also
-- after a task that failed in the middle of it (dstream.worker's run calls it).
local text_out, text_len, text_count = ffi.new("char *[1]"), ffi.new("size_t[1]"), ffi.new("uint64_t[1]")
local text_err = ffi.new("char[512]")
local held = nil

local function release_text_block()
  if held ~= nil then
    C.ds_text_file_free(held)
    held = nil
  end
end

local function text_block(b)
  release_text_block()
  if C.ds_text_file_read(b[1], b[2], b[3], text_out, text_len, text_count, text_err, 512) ~= 0 then
    error(ffi_string(text_err), 0)
  end
  held = text_out[0]
  return pull_line, { ffi_cast(u8p, held), tonumber(text_len[0]), 0 }, tonumber(text_count[0])
end

return { read_all = read_all, read_flat = read_flat, pull_slice = pull_slice, pull_int = pull_int,
  pull_arrays = pull_arrays,
  text_block = text_block, release_text_block = release_text_block, readers = readers }
