-- dstream/worker/ops/sort.lua: worker side of sorting (sort_by, sort_by_key) and of the bounded
-- selections (top, take_ordered, max, min). A sort is a range-partitioned shuffle: a sampling
-- job (`sort_sample`: a reservoir of keys per partition) lets the driver pick bounds, the map
-- side (`range`) sends each record to the partition of its key's range, and the reduce side
-- (`sort`) sorts its partition; partitions come out in order, so the batch is sorted as a
-- whole. top/take_ordered keep a heap of n records per partition (`top`), merged on the
-- driver. Keys compare as dstream.ordering says. Registered into dstream.worker.
local ordering = require("dstream.ordering")
local table_new = require("table.new")
local task = require("dstream.worker.task")

return function(W)
  local operators, terminals = W.operators, W.terminals
  local shipped, emit = W.shipped, W.emit
  local less = ordering.less
  local buckets, emit_buckets = task.buckets, task.emit_buckets
  local type, floor, pcall = type, math.floor, pcall
  local not_pair, nil_key, records_error = task.not_pair, task.nil_key, task.records_error
  ordering.unordered = records_error -- (this Lua state is a worker's)

  -- A key of another kind than the keys before it (or no order at all): the records are
  -- wrong, so the task is not retried. Called only off the per-record fast path.
  local function check(k, kind, who)
    local ok, r = pcall(ordering.check, k, kind, who)
    if ok then return r end
    records_error(r)
  end

  -- The key of a record (a, b): spec.fn(a, b) (sort_by, top's key), or the pair's key a,
  -- through spec.keyfunc when given (sort_by_key); spec.by_key wants pairs.
  local function key_of(spec)
    local who = spec.who
    if spec.fn then return shipped(spec.fn) end
    local keyfunc = spec.keyfunc and shipped(spec.keyfunc)
    if spec.by_key then
      if keyfunc then
        return function(a, b)
          if b == nil then not_pair(who) end
          return keyfunc(a)
        end
      end
      return function(a, b)
        if b == nil then not_pair(who) end
        return a
      end
    end
    return function(a) return a end
  end

  -- Sampling job: up to spec.size keys of the partition, a uniform reservoir (the random
  -- numbers MINSTD's, seeded by the partition, so a sort's bounds are the same in every run),
  -- and the partition's record count: { n = count, keys = {...} }.
  function terminals.sort_sample(task, spec)
    local key, size, who = key_of(spec), spec.size, spec.who
    local keys, n = table_new(size, 0), 0
    local x = (spec.seed % 2147483646) + 1
    local function push(a, b)
      if a == nil then
        if b ~= nil then nil_key(who, b) end
        return
      end
      n = n + 1
      if n <= size then
        keys[n] = key(a, b)
      else
        x = x * 48271 % 2147483647
        local j = floor(x / 2147483647 * n) + 1
        if j <= size then keys[j] = key(a, b) end
      end
    end
    local function finish()
      emit(task, 0, 1, false, { { n = n, keys = keys } })
      keys = nil
    end
    return push, finish
  end

  -- Map side of a sort: the record goes to the partition of its key among spec.bounds
  -- (ascending; the number of bounds below the key), counted from the end when descending.
  function terminals.range(task, spec)
    local nparts, who, bounds, ascending = spec.partitions, spec.who, spec.bounds, spec.ascending
    local key, nb = key_of(spec), #bounds
    local kind = nb > 0 and type(bounds[1]) or nil
    local keys, values, counts = buckets(nparts)
    local pairs_flag
    local function push(a, b)
      if a == nil then
        if b ~= nil then nil_key(who, b) end
        return
      end
      local t = 0
      if nb > 0 then
        local k = key(a, b)
        if type(k) ~= kind or k ~= k then check(k, kind, who) end
        local lo, hi = 1, nb + 1 -- the first bound not below k
        while lo < hi do
          local mid = floor((lo + hi) / 2)
          if less(bounds[mid], k, who) then lo = mid + 1 else hi = mid end
        end
        t = ascending and lo - 1 or nb - lo + 1
      end
      if pairs_flag == nil then pairs_flag = b ~= nil end
      local c = counts[t] + 1
      counts[t] = c
      keys[t][c], values[t][c] = a, b
    end
    local function finish()
      emit_buckets(task, nparts, pairs_flag, keys, values, counts)
      keys, values = nil, nil -- a trace may keep push alive: not the task's records
    end
    return push, finish
  end

  -- Sorts a[lo..hi] by lt, which orders no two entries as equal (ties are broken by index):
  -- quicksort, median of three, insertion sort below 16 entries. Lua rather than table.sort,
  -- whose comparator calls from C are never compiled: 3 to 4 times as fast on 250k records.
  local function quicksort(a, lo, hi, lt)
    while hi - lo > 16 do
      local mid = floor((lo + hi) / 2)
      if lt(a[mid], a[lo]) then a[mid], a[lo] = a[lo], a[mid] end
      if lt(a[hi], a[lo]) then a[hi], a[lo] = a[lo], a[hi] end
      if lt(a[hi], a[mid]) then a[hi], a[mid] = a[mid], a[hi] end
      local p, i, j = a[mid], lo, hi
      while i <= j do
        while lt(a[i], p) do i = i + 1 end
        while lt(p, a[j]) do j = j - 1 end
        if i <= j then
          a[i], a[j] = a[j], a[i]
          i, j = i + 1, j - 1
        end
      end
      if j - lo < hi - i then -- recurse into the smaller side: the depth stays O(log n)
        quicksort(a, lo, j, lt)
        lo = i
      else
        quicksort(a, i, hi, lt)
        hi = j
      end
    end
    for i = lo + 1, hi do
      local v, j = a[i], i - 1
      while j >= lo and lt(v, a[j]) do
        a[j + 1] = a[j]
        j = j - 1
      end
      a[j + 1] = v
    end
  end

  -- Reduce side of a sort: the partition's records by key, ties in arrival order (the map
  -- tasks' order, so a sort is stable and the same in every run). The keys are computed once
  -- and an array of indices is sorted.
  function operators.sort(spec, nxt, fin)
    local key, who, ascending = key_of(spec), spec.who, spec.ascending
    local ka, va, n = {}, {}, 0
    local function push(a, b)
      n = n + 1
      ka[n], va[n] = a, b
    end
    local function finish()
      local kk, idx, kind = table_new(n, 0), table_new(n, 0), nil
      for i = 1, n do
        local k = key(ka[i], va[i])
        if type(k) ~= kind or k ~= k then kind = check(k, kind, who) end
        kk[i], idx[i] = k, i
      end
      local cmp
      if kind == "table" then
        cmp = function(i, j)
          local x, y = kk[i], kk[j]
          if not ascending then x, y = y, x end
          if less(x, y, who) then return true end
          if less(y, x, who) then return false end
          return i < j
        end
      elseif ascending then
        cmp = function(i, j)
          local x, y = kk[i], kk[j]
          if x ~= y then return x < y end
          return i < j
        end
      else
        cmp = function(i, j)
          local x, y = kk[i], kk[j]
          if x ~= y then return x > y end
          return i < j
        end
      end
      quicksort(idx, 1, n, cmp)
      local a, b = ka, va
      ka, va, kk = nil, nil, nil -- a trace may keep push alive: not the task's records
      for i = 1, n do
        local j = idx[i]
        nxt(a[j], b[j])
      end
      fin()
    end
    return push, finish
  end

  -- top(n) / take_ordered(n): the partition's best n records in a heap whose root is the worst
  -- of them (spec.largest: the largest keys; else the smallest), ties won by the earlier
  -- record. Emits one record: { keys, firsts, seconds, seqs, count }.
  function terminals.top(task, spec)
    local key, who, limit, largest = key_of(spec), spec.who, spec.n, spec.largest
    local hk, ha, hb, hs = table_new(limit, 0), table_new(limit, 0), table_new(limit, 0), table_new(limit, 0)
    local h, seq, kind = 0, 0, nil
    -- Is entry i worse than key k with sequence s (evicted first)?
    local function worse(ki, si, k, s)
      if ki == k then return si > s end
      local x, y = ki, k -- largest: worse when ki < k; smallest: when k < ki
      if not largest then x, y = k, ki end
      if less(x, y, who) then return true end
      if kind == "table" and not less(y, x, who) then return si > s end -- equal arrays
      return false
    end
    local function sift_down(i)
      while true do
        local l = 2 * i
        if l > h then return end
        local r, w = l + 1, l
        if r <= h and worse(hk[r], hs[r], hk[l], hs[l]) then w = r end
        if not worse(hk[w], hs[w], hk[i], hs[i]) then return end
        hk[i], hk[w], ha[i], ha[w] = hk[w], hk[i], ha[w], ha[i]
        hb[i], hb[w], hs[i], hs[w] = hb[w], hb[i], hs[w], hs[i]
        i = w
      end
    end
    local function push(a, b)
      if a == nil then
        if b ~= nil then nil_key(who, b) end
        return
      end
      local k = key(a, b)
      if type(k) ~= kind or k ~= k then kind = check(k, kind, who) end
      seq = seq + 1
      if h < limit then
        h = h + 1
        local i = h
        hk[i], ha[i], hb[i], hs[i] = k, a, b, seq
        while i > 1 do -- sift up: the worst to the root
          local p = floor(i / 2)
          if not worse(hk[i], hs[i], hk[p], hs[p]) then break end
          hk[i], hk[p], ha[i], ha[p] = hk[p], hk[i], ha[p], ha[i]
          hb[i], hb[p], hs[i], hs[p] = hb[p], hb[i], hs[p], hs[i]
          i = p
        end
      elseif worse(hk[1], hs[1], k, seq) then
        hk[1], ha[1], hb[1], hs[1] = k, a, b, seq
        sift_down(1)
      end
    end
    local function finish()
      if h > 0 then emit(task, 0, 1, false, { { hk, ha, hb, hs, h } }) end
      hk, ha, hb, hs = nil, nil, nil, nil
    end
    return push, finish
  end
end
