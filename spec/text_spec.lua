-- dstream.text: words(s) and split(s, sep), the compiled tokenising iterators of the stdlib.
-- words must agree with s:gmatch("%S+") on any input; split keeps empty fields and treats its
-- separator as plain text. Also: they work on the workers, inside flat_map.
local text = require("dstream.text")

local function collect(iter, state, ctl)
  local out = {}
  for w in iter, state, ctl do out[#out + 1] = w end
  return out
end

local function words(s) return collect(text.words(s)) end
local function split(s, sep) return collect(text.split(s, sep)) end

local function gmatch_words(s)
  local out = {}
  for w in s:gmatch("%S+") do out[#out + 1] = w end
  return out
end

describe("dstream.text", function()
  it("resolves to the stdlib module (nothing in lua/dstream shadows it)", function()
    local path = package.searchpath("dstream.text", package.path)
    assert.truthy(path:find("stdlib/dstream/text.lua", 1, true), path)
  end)

  describe("words", function()
    it("yields the words of a line in order", function()
      assert.same({ "to", "be", "or", "not" }, words("to be or not"))
    end)

    it("skips leading, trailing and repeated separators", function()
      assert.same({ "a", "b" }, words("   a    b   "))
      assert.same({ "x" }, words(" x"))
      assert.same({ "x" }, words("x "))
    end)

    it("yields nothing for an empty string or one of separators only", function()
      assert.same({}, words(""))
      assert.same({}, words(" "))
      assert.same({}, words(" \t\r\n\v\f "))
    end)

    it("treats tabs, newlines, carriage returns, vertical tabs and form feeds as separators", function()
      assert.same({ "a", "b", "c", "d", "e", "f", "g" }, words("a\tb\nc\rd\ve\ff g"))
      assert.same({ "col1", "col2" }, words("col1\t\tcol2\r\n"))
    end)

    it("keeps bytes of UTF-8 characters inside words", function()
      assert.same({ "naïve", "café", "日本語", "–" }, words("naïve café\t日本語 –"))
      -- A no-break space (U+00A0) is not ASCII whitespace: it stays inside the word.
      assert.same({ "a\194\160b" }, words("a\194\160b"))
    end)

    it("keeps NUL bytes inside words", function()
      assert.same({ "a\0b", "\0", "c\0" }, words("a\0b \0 c\0"))
      assert.same({ "\0\0" }, words("\0\0"))
    end)

    it("handles one-character words and a single word", function()
      assert.same({ "a", "b", "c" }, words("a b c"))
      assert.same({ "word" }, words("word"))
    end)

    it("agrees with gmatch('%S+') on random strings", function()
      local alphabet = { "a", "b", " ", " ", "\t", "\n", "\r", "\v", "\f", "é", "\0", "xy" }
      local seed = 7
      local function rnd(n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n + 1
      end
      for _ = 1, 500 do
        local parts = {}
        for j = 1, rnd(30) - 1 do parts[j] = alphabet[rnd(#alphabet)] end
        local s = table.concat(parts)
        assert.same(gmatch_words(s), words(s))
      end
    end)

    it("nests: two loops over different strings do not disturb each other", function()
      local pairs_seen = {}
      for a in text.words("x y") do
        for b in text.words("1 2") do pairs_seen[#pairs_seen + 1] = a .. b end
      end
      assert.same({ "x1", "x2", "y1", "y2" }, pairs_seen)
    end)

    it("keeps loops apart when one breaks early, or starts inside another, or in a coroutine", function()
      local seen = {}
      for a in text.words("p q r") do
        for b in text.words("1 2 3") do
          if b == "2" then break end -- this loop's state is never finished
          seen[#seen + 1] = a .. b
        end
        for f in text.split("x,y", ",") do seen[#seen + 1] = a .. f end
      end
      assert.same({ "p1", "px", "py", "q1", "qx", "qy", "r1", "rx", "ry" }, seen)
      local co = coroutine.wrap(function()
        for w in text.words("c1 c2 c3") do coroutine.yield(w) end
      end)
      local mixed = {}
      for w in text.words("m1 m2") do
        mixed[#mixed + 1] = w
        mixed[#mixed + 1] = co()
      end
      mixed[#mixed + 1] = co()
      assert.same({ "m1", "c1", "m2", "c2", "c3" }, mixed)
      assert.same({ "after" }, words("after"))
    end)

    it("refuses a value that is not a string, naming the caller's line", function()
      local ok, err = pcall(text.words, 42)
      assert.is_false(ok)
      assert.matches("words: expected a string, got number", err)
    end)
  end)

  describe("split", function()
    it("yields the fields between separators", function()
      assert.same({ "a", "b", "c" }, split("a,b,c", ","))
    end)

    it("keeps empty fields from leading, trailing and repeated separators", function()
      assert.same({ "", "a", "", "b", "" }, split(",a,,b,", ","))
      assert.same({ "", "" }, split(",", ","))
      assert.same({ "", "", "" }, split(",,", ","))
    end)

    it("yields one empty field for an empty string, and the string when sep is absent", function()
      assert.same({ "" }, split("", ","))
      assert.same({ "abc" }, split("abc", ","))
    end)

    it("splits at tabs", function()
      assert.same({ "k", "v", "" }, split("k\tv\t", "\t"))
    end)

    it("takes a separator of several characters", function()
      assert.same({ "a", "b", "c" }, split("a::b::c", "::"))
      assert.same({ "a", ":b" }, split("a:::b", "::"))
      assert.same({ "", "x", "" }, split("<>x<>", "<>"))
      assert.same({ "a", "b" }, split("a\r\nb", "\r\n"))
    end)

    it("treats the separator as plain text, never a pattern", function()
      assert.same({ "a", "b" }, split("a.b", "."))
      assert.same({ "1", "2" }, split("1%d2", "%d"))
      assert.same({ "x", "y", "z" }, split("x[+]y[+]z", "[+]"))
      assert.same({ "a", "b" }, split("a()b", "()"))
      assert.same({ "abc" }, split("abc", "%a"))
    end)

    it("splits UTF-8 text, and at a UTF-8 separator", function()
      assert.same({ "été", "hiver" }, split("été;hiver", ";"))
      assert.same({ "a", "b" }, split("a→b", "→"))
    end)

    it("keeps NUL bytes, and splits at a NUL separator", function()
      assert.same({ "a\0b", "c" }, split("a\0b,c", ","))
      assert.same({ "a", "b" }, split("a\0b", "\0"))
    end)

    it("is words(s) without a separator", function()
      assert.same({ "a", "b" }, split("  a\tb "))
    end)

    it("refuses an empty or non-string separator and a non-string subject", function()
      local ok, err = pcall(text.split, "a,b", "")
      assert.is_false(ok)
      assert.matches("split: the separator must be a non%-empty string, got an empty string", err)
      ok, err = pcall(text.split, "a,b", 1)
      assert.is_false(ok)
      assert.matches("got number", err)
      ok, err = pcall(text.split, nil, ",")
      assert.is_false(ok)
      assert.matches("split: expected a string, got nil", err)
    end)
  end)

  describe("on the workers", function()
    local dstream = require("dstream")

    it("tokenises inside flat_map, with the module shipped by name", function()
      local ctx = dstream.context { workers = 2, partitions = 3, clock = "manual" }
      local lines = { "to be  or", "\tnot to be ", "", "é é" }
      local counts = ctx:parallelize(lines)
        :flat_map(function(line) return text.words(line) end)
        :map(function(w) return w, 1 end)
        :reduce_by_key(function(a, b) return a + b end)
        :collect_as_map()
      local fields = ctx:parallelize({ "a,b", ",c" })
        :flat_map(function(line) return text.split(line, ",") end)
        :collect()
      ctx:stop()
      assert.same({ to = 2, be = 2, ["or"] = 1, ["not"] = 1, ["é"] = 2 }, counts)
      assert.same({ "a", "b", "", "c" }, fields)
    end)

    it("tokenises ctx:text_file lines: CRLF ends, empty lines, NUL bytes, no final newline", function()
      local path = os.tmpname()
      local fh = assert(io.open(path, "wb"))
      fh:write("to be\r\n\nor  not\0x\r\n\tto be")
      fh:close()
      local ctx = dstream.context { workers = 2, partitions = 2, clock = "manual" }
      local lines = ctx:text_file(path, 3):collect()
      local words = ctx:text_file(path):flat_map(function(line) return text.words(line) end):collect()
      ctx:stop()
      os.remove(path)
      assert.same({ "to be", "", "or  not\0x", "\tto be" }, lines)
      assert.same({ "to", "be", "or", "not\0x", "to", "be" }, words)
    end)
  end)
end)
