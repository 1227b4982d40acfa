-- flat_map as the first operator of a stage runs in the reader's own loop (worker.lua
-- read_flat), one loop over the input records and what each expands to; elsewhere it runs
-- inside the previous operator's push. Both must give the same records, on every kind of
-- input (lines in C memory, encoded values, encoded pairs, integer ranges), with every kind
-- of expansion (iterators with and without a control variable, arrays, nil, empty ones,
-- pairs), in any mix from one record to the next.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local R = H.ref

-- One expansion per kind, chosen by the record: the kinds alternate from record to record.
local function expand(x)
  local k = type(x) == "number" and x % 7 or #x % 7
  if k == 0 then return nil end                                -- no records
  if k == 1 then return {} end                                 -- an empty array
  if k == 2 then return { x, x } end                           -- an array
  if k == 3 then                                               -- a control variable
    return function(_, i) if i < 3 then return i + 1 end end, nil, 0
  end
  if k == 4 then return tostring(x):gmatch(".") end            -- a C iterator, no state
  if k == 5 then return require("dstream.text").words("") end  -- an empty iterator
  return require("dstream.text").words(tostring(x) .. " " .. tostring(x))
end

local function sorted_repr(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = H.repr(v) end
  table.sort(out)
  return out
end

local LINES = H.random_lines(400, 71)
local INTS = H.random_ints(500, 0, 1000, 72)
local PAIRS = H.random_pairs(300, 73)

local function write_lines(lines)
  local path = os.tmpname()
  local fh = assert(io.open(path, "wb"))
  fh:write(table.concat(lines, "\n"), "\n")
  fh:close()
  return path
end

for _, cfg in ipairs(H.configs({ 1, 2 }, { 1, 3 })) do
  describe("flat_map first in its stage, " .. cfg.name, function()
    it("expands lines read from a file, every kind of expansion mixed", function()
      local path = write_lines(LINES)
      local got = H.with_context(cfg, function(ctx)
        return ctx:text_file(path, cfg.partitions):flat_map(expand):collect()
      end)
      os.remove(path)
      assert.are.same(sorted_repr(R.flat_map(LINES, expand)), sorted_repr(got))
    end)

    it("expands encoded values the same way", function()
      local got = H.with_context(cfg, function(ctx)
        return ctx:parallelize(INTS, cfg.partitions):flat_map(expand):collect()
      end)
      assert.are.same(sorted_repr(R.flat_map(INTS, expand)), sorted_repr(got))
    end)

    it("passes a pair's key and value to the function", function()
      local f = function(k, v) return { k .. "=" .. tostring(v), v } end
      local g = function(k, v) -- an iterator of pairs
        return function(_, i) if i < 2 then return i + 1, k end end, nil, 0
      end
      local got = H.with_context(cfg, function(ctx)
        return ctx:parallelize(PAIRS, cfg.partitions, { pairs = true }):flat_map(f):collect()
      end)
      assert.are.same(sorted_repr(R.flat_map(PAIRS, f, true)), sorted_repr(got))
      got = H.with_context(cfg, function(ctx)
        return ctx:parallelize(PAIRS, cfg.partitions, { pairs = true }):flat_map(g):collect()
      end)
      assert.are.same(sorted_repr(R.flat_map(PAIRS, g, true)), sorted_repr(got))
    end)

    it("gives the same records as a flat_map later in the stage", function()
      local path = write_lines(LINES)
      local got = H.with_context(cfg, function(ctx)
        local data = ctx:text_file(path, cfg.partitions)
        return { data:flat_map(expand):collect(),
          data:map(function(l) return l end):flat_map(expand):collect() }
      end)
      os.remove(path)
      assert.is_true(#got[1] > #LINES)
      assert.are.same(sorted_repr(got[2]), sorted_repr(got[1]))
    end)

    it("expands the integers of a rate stream", function()
      local got = H.with_context(cfg, function(ctx)
        local out = {}
        ctx:rate_stream({ rows_per_second = 50 }):flat_map(expand):foreach_rdd(function(rdd)
          for _, v in ipairs(rdd:collect()) do out[#out + 1] = v end
        end)
        ctx:start()
        ctx:advance(3)
        return out
      end)
      local ints = {}
      for i = 0, 149 do ints[#ints + 1] = i end
      assert.are.same(sorted_repr(R.flat_map(ints, expand)), sorted_repr(got))
    end)

    it("counts words like the reference, over many slices", function()
      local lines = H.random_lines(20000, 74)
      local path = write_lines(lines)
      local text = require("dstream.text")
      local got = H.with_context(cfg, function(ctx)
        return ctx:text_file(path, cfg.partitions)
          :flat_map(function(l) return text.words(l) end)
          :map(function(w) return w, 1 end)
          :reduce_by_key(function(a, b) return a + b end)
          :collect_as_map()
      end)
      os.remove(path)
      local want = R.count_by_value(R.flat_map(lines, function(l) return l:gmatch("%S+") end))
      assert.are.same(want, got)
    end)

    -- flat_map(text.words) itself on lines in C memory cuts the words from the bytes (no Lua
    -- string per line: worker/readers.lua read_words); the words must be gmatch("%S+")'s.
    it("splits lines in C memory with text.words itself like gmatch, separators, NULs and UTF-8 included", function()
      local pieces = { "a", "bb", "z9", "\0", "é", " ", "  ", "\t", "\v", "\f", "\r", "x\0y" }
      math.randomseed(75)
      local lines = {}
      for i = 1, 3000 do
        local parts = {}
        for j = 1, math.random(0, 12) do parts[j] = pieces[math.random(#pieces)] end
        lines[i] = table.concat(parts)
      end
      lines[#lines + 1], lines[#lines + 2] = "", " \t "
      -- More words in a line than read_words takes from C in one call (1024).
      lines[#lines + 1] = string.rep("w ", 2500) .. "end"
      local path = write_lines(lines)
      local text = require("dstream.text")
      local got = H.with_context(cfg, function(ctx)
        return ctx:text_file(path, cfg.partitions):flat_map(text.words)
          :map(function(w) return w, 1 end):reduce_by_key(function(a, b) return a + b end)
          :collect_as_map()
      end)
      os.remove(path)
      local want = R.count_by_value(R.flat_map(lines, function(l) return l:gmatch("%S+") end))
      assert.are.same(want, got)
    end)

    it("names the line when an operator after flat_map(text.words) raises on a word", function()
      local path = write_lines({ "fine line", "a bad  line", "fine" })
      local text = require("dstream.text")
      local ok, err = pcall(H.with_context, cfg, function(ctx)
        return ctx:text_file(path, cfg.partitions):flat_map(text.words):map(function(w)
          if w == "bad" then error("cannot take " .. w) end
          return w
        end):collect()
      end)
      os.remove(path)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find('record "a bad  line"', 1, true), tostring(err))
      assert.is_truthy(tostring(err):find("cannot take bad", 1, true), tostring(err))
    end)

    it("names the line when the word that raises comes after the word loop is compiled", function()
      local lines = {}
      for i = 1, 30000 do lines[i] = "line " .. i .. " of  words" end
      lines[25000] = "the  bad line 25000"
      local path = write_lines(lines)
      local text = require("dstream.text")
      local ok, err = pcall(H.with_context, cfg, function(ctx)
        return ctx:text_file(path, cfg.partitions):flat_map(text.words):map(function(w)
          if w == "bad" then error("cannot take " .. w) end
          return w
        end):count()
      end)
      os.remove(path)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find('record "the  bad line 25000"', 1, true), tostring(err))
    end)

    it("names the input record when the function raises, and when it returns a bad value", function()
      local ok, err = pcall(H.with_context, cfg, function(ctx)
        return ctx:parallelize({ "fine", "the-bad-one", "fine too" }, cfg.partitions)
          :flat_map(function(l)
            if l == "the-bad-one" then error("cannot expand " .. l) end
            return { l }
          end):collect()
      end)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find('record "the-bad-one"', 1, true), tostring(err))
      assert.is_truthy(tostring(err):find("cannot expand the-bad-one", 1, true), tostring(err))

      ok, err = pcall(H.with_context, cfg, function(ctx)
        return ctx:parallelize({ 1, 2, 3 }, cfg.partitions):flat_map(function(x)
          if x == 2 then return 42 end
          return { x }
        end):collect()
      end)
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find(
        "flat_map: the function must return an array or an iterator, not a number", 1, true),
        tostring(err))
      assert.is_truthy(tostring(err):find("record 2", 1, true), tostring(err))
    end)
  end)
end

describe("flat_map(text.words)'s reader under the JIT", function()
  -- The reader's loops over a slice's words compile with no abort: a light userdata passed to
  -- ds_words_cut (the string table to prefetch into) stopped the slice loop's trace ("NYI:
  -- unsupported C type conversion"), which dstream -jv names.
  it("compiles its loops: dstream -jv reports no abort in readers.lua", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    local distinct = {}
    for i = 1, 20000 do
      f:write("alpha beta ", i % 977, " gamma delta ", i, "\n")
      distinct[tostring(i % 977)], distinct[tostring(i)] = true, true
    end
    f:close()
    local want = 4
    for _ in pairs(distinct) do want = want + 1 end
    local code = "local t = require('dstream.text'); local c = require('dstream').context { workers = 1 }; "
      .. "print('DISTINCT ' .. c:text_file('" .. path .. "'):flat_map(t.words)"
      .. ":map(function(w) return w, 1 end):reduce_by_key(function(a, b) return a + b end):count())"
    local p = assert(io.popen(H.interpreter() .. " -jv -e \"" .. code .. "\" 2>&1"))
    local out = p:read("*a")
    p:close()
    os.remove(path)
    assert.truthy(out:find("DISTINCT " .. want, 1, true), out)
    assert.truthy(out:find("readers.lua", 1, true), out) -- its loops were traced at all
    for line in out:gmatch("[^\n]+") do
      assert.falsy(line:find("TRACE ---", 1, true) and line:find("readers.lua", 1, true), line)
    end
  end)
end)
