-- Closure shipping: what a closure given to an operator sees on a worker. Upvalues are copied
-- by value with their identities kept (shared and self-referencing tables, recursive locals,
-- sibling closures sharing an upvalue), globals and module tables travel, builtins work, and a
-- worker's changes are never seen by the driver.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local R = H.ref

local BIG = H.random_ints(2000, 0, 1000, 72)

for _, cfg in ipairs(H.configs({ 1, 4 }, { 1, 3 })) do
  describe("closure shipping (" .. cfg.name .. ")", function()
    local function run_map(input, f)
      return H.run(cfg, input, function(s) return s:map(f) end)
    end

    it("copies numbers, strings, booleans and nested tables", function()
      local n, prefix, flag = 10, "v=", true
      local conf = { a = { b = { c = 5 } }, list = { 1, 2, 3 }, [7] = "seven" }
      local f = function(x)
        return prefix .. (x + n + conf.a.b.c + #conf.list) .. conf[7] .. tostring(flag)
      end
      local input = { { 1, 2, 3 }, {}, BIG }
      assert.are.same(R.per_batch(input, R.map, f), run_map(input, f))
    end)

    it("keeps the identity of a table shared by two upvalues", function()
      local t = { 1 }
      local a, b = t, t
      local results = run_map({ { 1, 2 }, BIG }, function(x) return a == b end)
      for _, batch in ipairs(results) do
        for _, v in ipairs(batch) do assert.is_true(v) end
      end
      assert.are.equal(2 + #BIG, #results[1] + #results[2])
    end)

    it("keeps tables shared inside a structure and self references", function()
      local shared = { k = "s" }
      local t = { left = shared, right = shared }
      t.self = t
      local results = run_map({ { 1, 2, 3 } }, function(x)
        return t.left == t.right and t.self == t and t.self.self.left.k == "s"
      end)
      assert.are.same({ { true, true, true } }, results)
    end)

    it("ships recursive local functions", function()
      local function fib(k)
        if k < 2 then return k end
        return fib(k - 1) + fib(k - 2)
      end
      local input = { H.range(0, 20), {} }
      local results = run_map(input, function(x) return fib(x) end)
      assert.are.same(R.per_batch(input, R.map, fib), results)
    end)

    it("ships mutually recursive local functions", function()
      local is_even, is_odd
      function is_even(k) if k == 0 then return true end return is_odd(k - 1) end
      function is_odd(k) if k == 0 then return false end return is_even(k - 1) end
      local input = { H.range(0, 50) }
      local results = run_map(input, function(x) return is_even(x) end)
      assert.are.same(R.per_batch(input, R.map, is_even), results)
    end)

    it("ships a closure made by a factory and functions capturing tables", function()
      local function make_adder(k) return function(x) return x + k end end
      local settings = { factor = 3 }
      local function scale(x) return x * settings.factor end
      local add5 = make_adder(5)
      local input = { BIG }
      local r1 = run_map(input, add5)
      local r2 = run_map(input, function(x) return scale(add5(x)) end)
      assert.are.same(R.per_batch(input, R.map, add5), r1)
      assert.are.same(R.per_batch(input, R.map, function(x) return (x + 5) * 3 end), r2)
    end)

    it("keeps sibling closures sharing an upvalue", function()
      local counter = 0
      local function inc() counter = counter + 1 end
      local function get() return counter end
      local api = { inc = inc, get = get }
      local results = run_map({ BIG }, function(x)
        counter = 0
        inc()
        api.inc()
        return get() * 1000 + api.get()
      end)
      for _, v in ipairs(results[1]) do assert.are.equal(2002, v) end
      assert.are.equal(#BIG, #results[1])
    end)

    it("ships a big lookup table", function()
      local lookup = {}
      for i = 0, 20000 do lookup[i] = i * i end
      local results = run_map({ BIG }, function(x) return lookup[x] end)
      assert.are.same(R.map(BIG, function(x) return x * x end), results[1])
    end)

    it("ships global functions and tables the closure reads", function()
      _G.dstream_spec_global_fn = function(x) return x * 3 end
      _G.DSTREAM_SPEC_GLOBAL_TABLE = { offset = 7, names = { "zero", "one" } }
      local ok, res = pcall(run_map, { { 0, 1, 1, 0 } }, function(x)
        return dstream_spec_global_fn(x) + DSTREAM_SPEC_GLOBAL_TABLE.offset .. DSTREAM_SPEC_GLOBAL_TABLE.names[x + 1]
      end)
      _G.dstream_spec_global_fn = nil
      _G.DSTREAM_SPEC_GLOBAL_TABLE = nil
      assert(ok, res)
      assert.are.same({ { "7zero", "10one", "10one", "7zero" } }, res)
    end)

    it("ships a global function defined with `function name() end` in the spec", function()
      function dstream_spec_helper(x) return "h" .. x end
      local ok, res = pcall(run_map, { { 1, 2 } }, function(x) return dstream_spec_helper(x) end)
      dstream_spec_helper = nil
      assert(ok, res)
      assert.are.same({ { "h1", "h2" } }, res)
    end)

    it("sends module tables by name and re-requires them on the worker", function()
      local sbuf = require("string.buffer")
      local text = string
      local bit = require("bit")
      local tbl = table
      local input = { { "ab", "Cd", "xyz" }, {} }
      local results = run_map(input, function(s)
        local round = sbuf.decode(sbuf.encode({ s }))[1]
        return text.upper(round) .. bit.band(#s, 1) .. tbl.concat({ "<", s, ">" })
      end)
      assert.are.same({ { "AB0<ab>", "CD0<Cd>", "XYZ1<xyz>" }, {} }, results)
    end)

    it("ships functions taken from modules as upvalues", function()
      local fmt, floor, upper = string.format, math.floor, string.upper
      local input = { { 1.25, 2.75, -3.5 } }
      local f = function(x) return upper(fmt("v%d:%s", floor(x), "a")) end
      assert.are.same(R.per_batch(input, R.map, f), run_map(input, f))
    end)

    it("lets builtins such as string.format and math.floor work", function()
      local input = { BIG }
      local f = function(x)
        return string.format("%05d|%s|%d", x, tostring(x % 2 == 0), math.floor(x / 7))
          .. table.concat({ select("#", 1, 2, 3) }, ",") .. type(x)
      end
      assert.are.same(R.per_batch(input, R.map, f), run_map(input, f))
    end)

    it("does not show a worker's changes to upvalues on the driver", function()
      local seen = { n = 0 }
      local hits = 0
      local results = run_map({ BIG }, function(x)
        seen.n = seen.n + 1
        hits = hits + 1
        return x
      end)
      assert.are.same({ BIG }, results)
      assert.are.equal(0, seen.n)
      assert.are.equal(0, hits)
    end)

    it("does not show changes made by foreach on workers", function()
      local total = 0
      local box = {}
      H.with_context(cfg, function(ctx)
        ctx:parallelize(H.deep_copy(BIG)):foreach(function(x)
          total = total + x
          box[#box + 1] = x
        end)
      end)
      assert.are.equal(0, total)
      assert.are.same({}, box)
    end)

    it("lets driver-side functions (foreach_rdd, transform) use anything", function()
      local my_stdout = io.stdout
      local my_co = coroutine.create(function() return 1 end)
      local got = {}
      H.with_context(cfg, function(ctx)
        ctx:queue_stream({ { 1, 2 } })
          :transform(function(rdd)
            got.co_status = coroutine.status(my_co)
            return rdd
          end)
          :foreach_rdd(function(rdd)
            got.is_file = io.type(my_stdout)
            got.data = rdd:collect()
          end)
        ctx:start()
        ctx:advance(1)
      end)
      assert.are.same({ co_status = "suspended", is_file = "file", data = { 1, 2 } }, got)
    end)

    it("ships closures of a job script that use real globals", function()
      local out = H.run_script(table.concat({
        'local dstream = require("dstream")',
        "function triple(x) return x * 3 end",
        "LOOKUP = { a = 1, b = 2 }",
        ("local ctx = dstream.context{ batch = '1s', clock = 'manual', workers = %d, partitions = %d }")
          :format(cfg.workers, cfg.partitions),
        "local got = {}",
        "ctx:queue_stream({ { 'a', 'b', 'a' } })",
        "  :map(function(k) return triple(LOOKUP[k]) end)",
        "  :foreach_rdd(function(rdd) got = rdd:collect() end)",
        "ctx:start()",
        "ctx:advance(1)",
        "ctx:stop()",
        'print("RESULT " .. table.concat(got, ","))',
      }, "\n"))
      assert.is_truthy(out:find("RESULT 3,6,3", 1, true), out)
    end)
  end)
end
