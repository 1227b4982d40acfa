-- dstream/worker/ops/batch.lua: worker side of the batch (rdd) API beyond the stream
-- operators: keeping a partition as it is (cache, the sides of cartesian), keys, values,
-- lookup, zip_with_index, sample, the set operators (distinct, subtract, intersection:
-- records hashed by themselves), cartesian, and the partials of aggregate, fold and stats.
-- Registered into dstream.worker.
local task_mod = require("dstream.worker.task")
local key_of, not_pair, nil_key, records_error = task_mod.key_of, task_mod.not_pair, task_mod.nil_key,
  task_mod.records_error
return function(W)
  local operators, terminals = W.operators, W.terminals
  local shipped, emit = W.shipped, W.emit
  local buckets, emit_buckets = task_mod.buckets, task_mod.emit_buckets
  local type, exp = type, math.exp

  local function mixed(who, a, b)
    records_error(who .. ": records of this batch mix key/value pairs and single values (this one: "
      .. require("dstream.format").brief(a, b) .. ")")
  end

  -- The partition's records, unchanged, for partition spec.start of the next stage (a cached
  -- batch's partitions, the sides of cartesian).
  function terminals.keep(task, spec)
    local ka, va, n, pairs_flag = {}, {}, 0, nil
    local target = spec.start
    local function push(a, b)
      if a == nil then
        if b ~= nil then nil_key(spec.who, b) end
        return
      end
      if pairs_flag == nil then pairs_flag = b ~= nil end
      if pairs_flag ~= (b ~= nil) then mixed(spec.who, a, b) end
      n = n + 1
      ka[n], va[n] = a, b
    end
    local function finish()
      emit(task, target, n, pairs_flag, ka, va)
      ka, va = nil, nil -- a trace may keep push alive: not the task's records
    end
    return push, finish
  end

  function operators.keys(_, nxt, fin)
    return function(k, v)
      if v == nil then not_pair("keys") end
      return nxt(k)
    end, fin
  end

  function operators.values(_, nxt, fin)
    return function(k, v)
      if v == nil then not_pair("values") end
      return nxt(v)
    end, fin
  end



  -- (record, index): a pair record becomes { k, v }; the partition's first index is
  -- spec.offset (counted by the driver).
  function operators.zip_with_index(spec, nxt, fin)
    local i = spec.offset - 1
    return function(a, b)
      i = i + 1
      if b ~= nil then return nxt({ a, b }, i) end
      return nxt(a, i)
    end, fin
  end

  -- Bernoulli sampling (each record kept with probability spec.fraction), or with
  -- replacement each record spec.fraction times on average (Poisson, Knuth's method). The
  -- random numbers are MINSTD's (exact in doubles), seeded per partition by the driver:
  -- the same seed gives the same sample.
  function operators.sample(spec, nxt, fin)
    local x = (spec.seed % 2147483646) + 1
    for _ = 1, 3 do x = x * 48271 % 2147483647 end -- nearby seeds: apart after a few steps
    if not spec.with_replacement then
      local threshold = spec.fraction * 2147483647
      return function(a, b)
        x = x * 48271 % 2147483647
        if x < threshold then return nxt(a, b) end
      end, fin
    end
    local limit = exp(-spec.fraction)
    return function(a, b)
      local p = 1
      while true do
        x = x * 48271 % 2147483647
        p = p * (x / 2147483647)
        if p <= limit then return end
        nxt(a, b)
      end
    end, fin
  end

  -- The set operators compare records as keys: strings, numbers and booleans by value, and
  -- arrays of those by value too, through their representative in this VM (task.key_of, as
  -- composite keys); other tables are refused. A pair is its key and value, both so.
  local function as_key(x, who, b)
    if type(x) == "table" then return key_of(x, who, b) end
    return x
  end

  -- The values of the pairs whose key is spec.key (an array key by value: representatives).
  function operators.lookup(spec, nxt, fin)
    local key = as_key(spec.key, "lookup")
    return function(k, v)
      if v == nil then not_pair("lookup") end
      if type(k) == "table" then k = key_of(k, "lookup", v) end
      if k == key then return nxt(v) end
    end, fin
  end

  -- Map side of the set operators: records hashed by themselves (a pair by its key, so equal
  -- pairs meet); spec.dedupe drops the task's repeats first (distinct, intersection).
  function terminals.hash_records(task, spec)
    local nparts, who, dedupe, key_hash = spec.partitions, spec.who, spec.dedupe, W.key_hash
    local keys, values, counts = buckets(nparts)
    local seen, pairs_flag = {}, nil
    local function push(a, b)
      if a == nil then
        if b ~= nil then nil_key(who, b) end
        return
      end
      if pairs_flag == nil then pairs_flag = b ~= nil end
      if pairs_flag ~= (b ~= nil) then mixed(who, a, b) end
      local t = key_hash(a, who, b) % nparts
      a, b = as_key(a, who, b), as_key(b, who, a)
      if dedupe then
        if b == nil then
          if seen[a] then return end
          seen[a] = true
        else
          if b ~= b then records_error(who .. ": a value is NaN, which equals nothing") end
          local s = seen[a]
          if s == nil then
            s = {}
            seen[a] = s
          elseif s[b] then
            return
          end
          s[b] = true
        end
      end
      local c = counts[t] + 1
      counts[t] = c
      keys[t][c], values[t][c] = a, b
    end
    local function finish()
      emit_buckets(task, nparts, pairs_flag, keys, values, counts)
      keys, values, seen = nil, nil, nil
    end
    return push, finish
  end

  -- Reduce side of distinct: the first of equal records, in arrival order.
  function operators.distinct(spec, nxt, fin)
    local seen = {}
    return function(a, b)
      a, b = as_key(a, "distinct", b), as_key(b, "distinct", a)
      if b == nil then
        if not seen[a] then
          seen[a] = true
          return nxt(a)
        end
      else
        local s = seen[a]
        if s == nil then
          s = {}
          seen[a] = s
        end
        if not s[b] then
          s[b] = true
          return nxt(a, b)
        end
      end
    end, function()
      seen = nil
      fin()
    end
  end

  -- Is (a, b) in set (a record set: set[a] = true, or set[a][b] = true for pairs)?
  local function has(set, a, b)
    local s = set[a]
    if b == nil or s == nil then return s ~= nil end
    return s[b] == true
  end
  local function add(set, a, b)
    if b == nil then
      set[a] = true
    else
      local s = set[a]
      if s == nil then
        s = {}
        set[a] = s
      end
      s[b] = true
    end
  end

  -- Reduce side of subtract (side 1 minus side 2, repeats of side 1 kept) and intersection
  -- (records of both sides, once; the map side removed each task's repeats).
  local function two_set(who, keep_if_in_right)
    return function(_, nxt, fin)
      local ka, va, n, right = {}, {}, 0, {}
      return function(a, b, side)
        a, b = as_key(a, who, b), as_key(b, who, a)
        if side == 2 then
          add(right, a, b)
        else
          n = n + 1
          ka[n], va[n] = a, b
        end
      end, function()
        local emitted = keep_if_in_right and {} or nil
        for i = 1, n do
          local a, b = ka[i], va[i]
          if has(right, a, b) == keep_if_in_right then
            if emitted then
              if not has(emitted, a, b) then
                add(emitted, a, b)
                nxt(a, b)
              end
            else
              nxt(a, b)
            end
          end
        end
        ka, va, right = nil, nil, nil
        fin()
      end
    end
  end
  operators.subtract = two_set("subtract", false)
  operators.intersection = two_set("intersection", true)

  -- cartesian: (x, y) for every x of the left partition and y of the right one, x first
  -- (a pair record becomes { k, v }, made once per record, not per output).
  function operators.cartesian(_, nxt, fin)
    local left, right, nl, nr = {}, {}, 0, 0
    return function(a, b, side)
      local r = a
      if b ~= nil then r = { a, b } end
      if side == 2 then
        nr = nr + 1
        right[nr] = r
      else
        nl = nl + 1
        left[nl] = r
      end
    end, function()
      for i = 1, nl do
        local x = left[i]
        for j = 1, nr do nxt(x, right[j]) end
      end
      left, right = nil, nil
      fin()
    end
  end

  -- aggregate(zero, seq_op, comb_op) and fold(zero, op): acc = seq_op(acc, x) (or
  -- seq_op(acc, k, v)) from the task's own copy of spec.zero (decoded with the task). One
  -- record per task, even an empty one (the driver combines them from zero again).
  function terminals.aggregate(task, spec)
    local f, acc, who, single = shipped(spec.fn), spec.zero, spec.who, spec.single
    local function push(a, b)
      if a == nil then
        if b ~= nil then nil_key(who, b) end
        return
      end
      if single and b ~= nil then
        records_error(who .. ": the records are key/value pairs; fold works on single values (use aggregate)")
      end
      if b == nil then acc = f(acc, a) else acc = f(acc, a, b) end -- f may be math.max
    end
    local function finish()
      emit(task, 0, 1, false, { { value = acc } })
      acc = nil
    end
    return push, finish
  end

  -- stats, sum, mean: count, mean and sum of squared deviations (Welford), max, min and the
  -- plain sum (exact for integers) of a partition's numbers.
  function terminals.stats(task, spec)
    local who = spec.who
    local n, mean, m2, max, min, sum = 0, 0, 0, -math.huge, math.huge, 0
    local function push(a, b)
      if type(a) ~= "number" or b ~= nil then
        if a == nil and b == nil then return end
        records_error(who .. ": the records must be numbers, got " .. (b ~= nil and "a key/value pair"
          or "a " .. type(a)))
      end
      n = n + 1
      local d = a - mean
      mean = mean + d / n
      m2 = m2 + d * (a - mean)
      sum = sum + a
      if a > max then max = a end
      if a < min then min = a end
    end
    local function finish()
      emit(task, 0, 1, false, { { n, mean, m2, max, min, sum } })
    end
    return push, finish
  end
end
