-- The LuaJIT dstream links (scripts/luajit.sh: Debian's source with patches/luajit/): each
-- patch's fault, run as a user's loop would meet it, in a process of its own (a compiler
-- crash is a segfault, which would end the whole spec run).
local H = require("spec.helpers.engine")

describe("the LuaJIT dstream links", function()
  -- patches/luajit/0002: a loop copy's load of a key that a table constructor's template
  -- lacks. string.upper over it crashed the compiler; a number load became NaN's bits.
  it("compiles a loop over tables whose fields come and go (patch 0002)", function()
    local out = H.run_script([[
      local prev, n = { user = "a" }, 0
      for i = 1, 300 do
        local u = prev.user
        if u then n = n + #u:upper() end
        prev = { ts = i }
        if i % 7 == 3 then prev.user = "xy" end
      end
      local last, m = { c = 1 }, 0
      for i = 1, 300 do
        local c = last.c
        if c then m = m + c end
        last = { ts = i }
        if i % 7 == 3 then last.c = 2 end
      end
      print(n, m, (jit.status()))
    ]])
    assert.are.equal("87\t87\ttrue", out:match("^[^\n]*"), out)
  end)

  -- patches/luajit/0003: (x & k1) >> k2 on 64-bit cdata is rewritten as (x >> k2) & (k1 >> k2),
  -- and k1 >> k2 was folded as a 32-bit shift: a 48-bit generator (java.util.Random's) gave
  -- other numbers compiled than interpreted.
  it("folds 64-bit shifts of constants as 64-bit operations (patch 0003)", function()
    local code = [[
      local bit = require("bit")
      local seed, s = 0x5DEECE666ULL, 0
      for i = 1, 200 do
        seed = bit.band(seed * 0x5DEECE66DULL + 0xBULL, 0xFFFFFFFFFFFFULL)
        s = s + tonumber(bit.rshift(seed, 16)) + tonumber(bit.arshift(bit.band(seed, 0x8000FFFF0000ULL), 4) % 1000ULL)
          + tonumber(bit.ror(bit.band(seed, 0xFF00FF00FF00ULL), 12) % 997ULL)
      end
      print(s)
    ]]
    local compiled = H.run_script(code)
    local interpreted = H.run_script("jit.off()\n" .. code)
    assert.are.equal(interpreted, compiled)
    assert.is_truthy(compiled:match("^%d+\n$"), compiled)
  end)
end)
