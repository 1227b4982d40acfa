-- examples/shared_variables.lua: a broadcast lookup table and an accumulator.
-- Country codes are translated on the workers through a broadcast table (shipped once per
-- worker), and an accumulator counts the codes nobody knew; both printed per batch.
local dstream = require("dstream")

local ctx = dstream.context { batch = "1s", clock = "manual", name = "shared_variables" }
local names = ctx:broadcast({ pt = "Portugal", no = "Norway", tw = "Taiwan", ke = "Kenya" })
local unknown = ctx:accumulator(0)

ctx:queue_stream({ { "pt", "no", "xx", "pt" }, { "ke", "tw", "yy", "zz" } })
  :map(function(code)
    local name = names.value[code]
    if not name then unknown:add(1) end
    return name or ("?" .. code), 1
  end)
  :reduce_by_key(function(a, b) return a + b end)
  :foreach_rdd(function(rdd, time)
    local counts = rdd:collect()
    table.sort(counts, function(a, b) return a[1] < b[1] end)
    local shown = {}
    for i, kv in ipairs(counts) do shown[i] = kv[1] .. "=" .. kv[2] end
    print(string.format("batch %d: %s; unknown codes so far: %d", time, table.concat(shown, " "),
      unknown.value))
  end)

ctx:start()
ctx:advance(2)
