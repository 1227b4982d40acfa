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
end)
