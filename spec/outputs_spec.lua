-- Output operations: print([n]) (run in a child dstream process to capture stdout),
-- foreach_rdd (every batch, empty ones included, with its time), save_as_text_files and
-- save_as_object_files (one directory per batch, part files inside).
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local R = H.ref

local BIG = H.random_ints(2000, -1000, 1000, 62)
local PAIRS = H.random_pairs(1500, 63)

-- A child script that builds `build` (Lua source using `s` and `ctx`) on a queue_stream of
-- `input`, runs `batches` batches and prints SCRIPT-OK at the end.
local function print_script(cfg, input, build, batches, qopts)
  return table.concat({
    'local dstream = require("dstream")',
    ("local ctx = dstream.context{ batch = '1s', clock = 'manual', workers = %d, partitions = %d }")
      :format(cfg.workers, cfg.partitions),
    ("local s = ctx:queue_stream(%s%s)"):format(H.repr(input), qopts and (", " .. H.repr(qopts)) or ""),
    build,
    "ctx:start()",
    ("ctx:advance(%d)"):format(batches or #input),
    "ctx:stop()",
    "io.stdout:flush()",
    'print("SCRIPT-OK")',
  }, "\n")
end

local function strings(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = tostring(v) end
  return out
end

local function expected_print(list, n)
  local out = strings(R.take(list, n))
  if #list > n then out[#out + 1] = "..." end
  return out
end

for _, cfg in ipairs(H.configs({ 1, 4 }, { 1, 3 })) do
  describe("outputs (" .. cfg.name .. ")", function()
    describe("print", function()
      it("prints a header with the batch time and the first 10 records, then ...", function()
        local input = { H.range(1, 12), { "a", "b c" }, {}, H.range(100, 109) }
        local out = H.run_script(print_script(cfg, input, "s:print()"))
        assert.is_truthy(out:find("SCRIPT-OK", 1, true), out)
        assert.are.same(expected_print(input[1], 10), H.printed_records(out, 1000), out)
        assert.are.same({ "a", "b c" }, H.printed_records(out, 2000), out)
        assert.are.same({}, H.printed_records(out, 3000), out)
        assert.are.same(strings(input[4]), H.printed_records(out, 4000), out)
      end)

      it("prints the first n records", function()
        local input = { { 1, 2, 3 }, { 1, 2, 3, 4, 5 }, BIG }
        local out = H.run_script(print_script(cfg, input, "s:print(3)"))
        assert.is_truthy(out:find("SCRIPT-OK", 1, true), out)
        assert.are.same({ "1", "2", "3" }, H.printed_records(out, 1000), out)
        assert.are.same({ "1", "2", "3", "..." }, H.printed_records(out, 2000), out)
        assert.are.same(expected_print(BIG, 3), H.printed_records(out, 3000), out)
      end)

      it("prints pairs as (k,v), as Spark does", function()
        local input = { { { "a", 1 }, { "b", 2.5 } }, PAIRS }
        local out = H.run_script(print_script(cfg, input, "s:print()", nil, { pairs = true }))
        assert.is_truthy(out:find("SCRIPT-OK", 1, true), out)
        assert.are.same({ "(a,1)", "(b,2.5)" }, H.printed_records(out, 1000), out)
        local expected = R.map(R.take(PAIRS, 10), function(k, v) return ("(%s,%s)"):format(k, tostring(v)) end, true)
        expected[#expected + 1] = "..."
        assert.are.same(expected, H.printed_records(out, 2000), out)
      end)

      it("prints a header for every batch, empty ones included", function()
        local input = { { 7 } }
        local out = H.run_script(print_script(cfg, input,
          "s:map(function(x) return x * 2 end):print()", 3))
        assert.is_truthy(out:find("SCRIPT-OK", 1, true), out)
        assert.are.same({ "14" }, H.printed_records(out, 1000), out)
        assert.are.same({}, H.printed_records(out, 2000), out)
        assert.are.same({}, H.printed_records(out, 3000), out)
      end)
    end)

    describe("foreach_rdd", function()
      it("is called on the driver for every batch, empty ones included", function()
        local calls = {}
        H.with_context(cfg, function(ctx)
          ctx:queue_stream({ { 1, 2 }, {}, { 3 } }):foreach_rdd(function(rdd, time)
            calls[#calls + 1] = { time = time, count = rdd:count(), data = rdd:collect() }
          end)
          ctx:start()
          ctx:advance(5)
        end)
        assert.are.same({
          { time = 1000, count = 2, data = { 1, 2 } },
          { time = 2000, count = 0, data = {} },
          { time = 3000, count = 1, data = { 3 } },
          { time = 4000, count = 0, data = {} },
          { time = 5000, count = 0, data = {} },
        }, calls)
      end)

      it("gets times that are multiples of the batch interval", function()
        local times = {}
        local c = { workers = cfg.workers, partitions = cfg.partitions, batch = "250ms" }
        H.with_context(c, function(ctx)
          ctx:queue_stream({ { 1 } }):foreach_rdd(function(_, time) times[#times + 1] = time end)
          ctx:start()
          ctx:advance(4)
        end)
        assert.are.same({ 250, 500, 750, 1000 }, times)
      end)

      it("accepts a batch given as a number of seconds", function()
        local times = {}
        local c = { workers = cfg.workers, partitions = cfg.partitions, batch = 2 }
        H.with_context(c, function(ctx)
          ctx:queue_stream({}):foreach_rdd(function(_, time) times[#times + 1] = time end)
          ctx:start()
          ctx:advance(2)
        end)
        assert.are.same({ 2000, 4000 }, times)
      end)

      it("is called for every output of derived streams", function()
        local counts, reduced = {}, {}
        H.with_context(cfg, function(ctx)
          local s = ctx:queue_stream({ BIG, {} })
          s:count():foreach_rdd(function(rdd) counts[#counts + 1] = rdd:collect() end)
          s:reduce(function(a, b) return a + b end):foreach_rdd(function(rdd)
            reduced[#reduced + 1] = rdd:collect()
          end)
          ctx:start()
          ctx:advance(3)
        end)
        assert.are.same({ { #BIG }, { 0 }, { 0 } }, counts)
        assert.are.same({ { R.reduce(BIG, function(a, b) return a + b end) }, {}, {} }, reduced)
      end)
    end)

    describe("save_as_text_files", function()
      local dir
      before_each(function() dir = H.tmpdir() end)
      after_each(function() H.rmdir(dir) end)

      local function save(input, build, qopts, ...)
        local args = { ... }
        H.with_context(cfg, function(ctx)
          local s = qopts and ctx:queue_stream(H.deep_copy(input), qopts) or ctx:queue_stream(H.deep_copy(input))
          if build then s = build(s) end
          s:save_as_text_files(dir .. "/out", unpack(args))
          ctx:start()
          ctx:advance(#input)
        end)
      end

      it("writes one directory per batch with one line per record, in order", function()
        local input = { { 1, 2, 3 }, {}, BIG, { "a b", "c" } }
        save(input)
        assert.are.same({ "out-1000", "out-2000", "out-3000", "out-4000" }, H.listdir(dir))
        for i, b in ipairs(input) do
          local d = dir .. "/out-" .. (i * 1000)
          assert.is_true(H.is_dir(d))
          assert.are.same(strings(b), H.read_text_parts(d))
        end
      end)

      it("names part files part-00000, part-00001, ...", function()
        save({ BIG })
        local parts = H.part_files(dir .. "/out-1000")
        assert.is_true(#parts >= 1)
        for i, name in ipairs(parts) do assert.are.equal(("part-%05d"):format(i - 1), name) end
      end)

      it("appends the suffix to the directory name", function()
        save({ { 1 }, { 2 } }, nil, nil, "txt")
        assert.are.same({ "out-1000.txt", "out-2000.txt" }, H.listdir(dir))
        assert.are.same({ "2" }, H.read_text_parts(dir .. "/out-2000.txt"))
      end)

      it("replaces a batch directory already there, whole (as a batch run again after a restart)", function()
        assert.is_true(H.sh("mkdir -p " .. dir .. "/out-1000 && echo old > " .. dir .. "/out-1000/stale"))
        save({ { 7 } })
        assert.are.same({ "_SUCCESS" }, R.filter(H.listdir(dir .. "/out-1000"), function(n) return not n:find("^part") end))
        assert.are.same({ "7" }, H.read_text_parts(dir .. "/out-1000"))
      end)

      it("writes pairs as k<TAB>v", function()
        save({ PAIRS, { { "a", 1 } } }, nil, { pairs = true })
        local expected = R.map(PAIRS, function(k, v) return k .. "\t" .. tostring(v) end, true)
        assert.are.same(expected, H.read_text_parts(dir .. "/out-1000"))
        assert.are.same({ "a\t1" }, H.read_text_parts(dir .. "/out-2000"))
      end)

      it("writes numbers as tostring would", function()
        local input = { { 1, -2, 1.5, -0.25, 1e300, 123456789 } }
        save(input)
        assert.are.same(strings(input[1]), H.read_text_parts(dir .. "/out-1000"))
      end)

      it("writes tables as JSON", function()
        local input = { { { a = 1, b = { 1, 2, 3 } }, { name = "x y", nested = { deep = "z" } }, { 4, 5 } } }
        save(input)
        local lines = H.read_text_parts(dir .. "/out-1000")
        assert.are.equal(3, #lines)
        for i, line in ipairs(lines) do
          assert.are.same(input[1][i], H.json_decode(line))
        end
      end)

      it("writes the result of transformations", function()
        local input = { BIG }
        save(input, function(s) return s:filter(function(x) return x > 0 end):map(function(x) return x * 2 end) end)
        local expected = R.map(R.filter(BIG, function(x) return x > 0 end), function(x) return x * 2 end)
        assert.are.same(strings(expected), H.read_text_parts(dir .. "/out-1000"))
      end)
    end)

    describe("save_as_object_files", function()
      local dir
      before_each(function() dir = H.tmpdir() end)
      after_each(function() H.rmdir(dir) end)

      local function save(input, qopts, ...)
        local args = { ... }
        H.with_context(cfg, function(ctx)
          local s = qopts and ctx:queue_stream(H.deep_copy(input), qopts) or ctx:queue_stream(H.deep_copy(input))
          s:save_as_object_files(dir .. "/obj", unpack(args))
          ctx:start()
          ctx:advance(#input)
        end)
      end

      it("writes records in string.buffer encoding, one directory per batch", function()
        local input = { BIG, {}, { "s", 1.5, true, { a = { 1, 2 }, b = "c" } } }
        save(input)
        assert.are.same({ "obj-1000", "obj-2000", "obj-3000" }, H.listdir(dir))
        for i, b in ipairs(input) do
          assert.are.same(b, H.read_object_parts(dir .. "/obj-" .. (i * 1000)))
        end
      end)

      it("writes a pair as two consecutive values", function()
        save({ PAIRS }, { pairs = true })
        local expected = {}
        for _, kv in ipairs(PAIRS) do
          expected[#expected + 1] = kv[1]
          expected[#expected + 1] = kv[2]
        end
        assert.are.same(expected, H.read_object_parts(dir .. "/obj-1000"))
      end)

      it("appends the suffix to the directory name", function()
        save({ { 1, 2 } }, nil, "bin")
        assert.are.same({ "obj-1000.bin" }, H.listdir(dir))
        assert.are.same({ 1, 2 }, H.read_object_parts(dir .. "/obj-1000.bin"))
      end)
    end)
  end)
end
