-- dstream/worker/ops/interval_join.lua: the worker side of event-time interval joins of two
-- streams (dstream.interval_join plans them): `left:join(right, { within = d })` pairs a left
-- record at time tl with each right record of its key at time tr in [tl - before, tl + after].
--
-- A state partition keeps, per key, the records of both sides that may still find a partner:
-- a list of entries { ts, value, side (1 left, 2 right), matched (true once paired) }. Each
-- batch's records of a key are paired with the key's kept entries of the other side and with
-- the batch's earlier ones, so each pair is emitted once, in the batch where the later of its
-- two records arrives. Then the watermark (the smaller of the two sides': a record that is
-- not late has a time at or past it) evicts what can no longer be paired: a left entry once
-- tl + after < watermark, a right one once tr + before < watermark; an outer join emits an
-- entry of its outer side that never paired as (k, { l, nil }) or (k, { nil, r }) then. So
-- the state holds a key's records of the last `after` (left) or `before` (right) behind the
-- watermark, bounded by the watermark, not by the input.
--
-- * One process (operator interval_join): each side's map side ends in session_partition
--   (the key's bucket, (key, {ts, value})); the reduce task reads both sides' buckets (a
--   two-sided input: records come with their side) where the state partition lives.
-- * Cluster mode (terminal cluster_join_send, operator cluster_interval_join): the two sides
--   share one repartition topic, each entry (key, {ts, value}, side); the map task's largest
--   timestamp goes to every state partition as (nil, ts, side). The keyed stage keeps each
--   side's largest timestamp it heard of (store.tops[side]); a record older than its side's
--   watermark of the batches before is late (dropped, counted per side). The changelog holds
--   each entry on its own, under (key, id) (id: its number within the key, entry[5], one more
--   than the key's last), so a batch writes the records it added, the entries whose paired flag
--   it set, and a tombstone per entry evicted, not a key's entries again; a side's largest
--   time is under (side) alone. A restore (apply_entry) collects a key's entries by id and puts
--   them back in order of id (arrival order).
-- Registered into dstream.worker (see its list of operator modules).
return function(W)
  local operators, terminals, current = W.operators, W.terminals, W.current
  local store_of = require("dstream.worker.store").store_of
  local task = require("dstream.worker.task")
  local key_of, slot = task.key_of, task.slot
  local pairs, type, error, min, sort = pairs, type, error, math.min, table.sort
  local dec = require("string.buffer").new()

  -- A key's entries after a batch: `old` (kept, not changed: a failed attempt changes
  -- nothing), `new` the batch's entries ({ts, value, side}, this task's own tables) or nil.
  -- Emits the pairs and, past the watermark, an outer side's unpaired entries. Returns the
  -- entries to keep (nil: none) and whether they differ from `old`.
  local function join_key(k, old, new, spec, watermark, nxt)
    local before, after, outer1, outer2 = spec.before, spec.after, spec.outer1, spec.outer2
    local list, changed = old, false
    if new then
      list, changed = {}, true
      local n = old and #old or 0
      for i = 1, n do list[i] = old[i] end
      local kept_n = n
      for j = 1, #new do
        local e = new[j]
        local side, ts = e[3], e[1]
        for i = 1, n do
          local o = list[i]
          if o[3] ~= side then
            local d = side == 1 and o[1] - ts or ts - o[1] -- the right time minus the left
            if d >= -before and d <= after then
              if side == 1 then nxt(k, { e[2], o[2] }) else nxt(k, { o[2], e[2] }) end
              e[4] = true
              -- (only an outer side's flag matters; a kept entry is copied: the state
              -- changes on success)
              if not o[4] and (o[3] == 1 and outer1 or o[3] == 2 and outer2) then
                if i <= kept_n then list[i] = { o[1], o[2], o[3], true, o[5] } else o[4] = true end
              end
            end
          end
        end
        n = n + 1
        list[n] = e
      end
    end
    if watermark and list then
      local kept, m = nil, 0
      for i = 1, #list do
        local e = list[i]
        local side = e[3]
        if e[1] + (side == 1 and after or before) < watermark then -- no partner can come
          if not e[4] and (side == 1 and outer1 or side == 2 and outer2) then
            if side == 1 then nxt(k, { e[2], nil }) else nxt(k, { nil, e[2] }) end
          end
          if not kept then
            kept, m = {}, i - 1
            for j = 1, m do kept[j] = list[j] end
          end
        elseif kept then
          m = m + 1
          kept[m] = e
        end
      end
      if kept then list, changed = kept, true end
    end
    if list and #list == 0 then list = nil end
    return list, changed
  end

  -- The expiry index of a state partition's rows, so that a batch looks at the keys whose
  -- entries expire rather than at every key held (a join within an hour holds an hour of keys;
  -- walking them all made each batch's cost grow with the state): a binary min-heap of (time,
  -- key), `exp[k]` the time key k's first entry expires (its ts + after for a left entry, + before
  -- for a right one: evicted once the watermark passes it), and the number of keys. A heap node
  -- whose time is not exp[k] any more is stale and skipped. Kept beside the rows table, not in
  -- the store: a checkpoint does not carry it, and rows restored (a new table) build it again.
  local indexes = setmetatable({}, { __mode = "k" }) -- rows -> { ht, hk, n, exp, keys }

  local function expiry(list, spec)
    local before, after, t = spec.before, spec.after, nil
    for i = 1, #list do
      local e = list[i]
      local x = e[1] + (e[3] == 1 and after or before)
      if t == nil or x < t then t = x end
    end
    return t
  end

  local function heap_push(ix, t, k)
    local ht, hk = ix.ht, ix.hk
    local i = ix.n + 1
    ix.n = i
    while i > 1 do
      local p = (i - i % 2) / 2
      if ht[p] <= t then break end
      ht[i], hk[i] = ht[p], hk[p]
      i = p
    end
    ht[i], hk[i] = t, k
  end

  local function heap_pop(ix)
    local ht, hk, n = ix.ht, ix.hk, ix.n
    local t, k = ht[n], hk[n]
    ht[n], hk[n] = nil, nil
    n = n - 1
    ix.n = n
    if n == 0 then return end
    local i = 1
    while true do
      local c = 2 * i
      if c > n then break end
      if c < n and ht[c + 1] < ht[c] then c = c + 1 end
      if ht[c] >= t then break end
      ht[i], hk[i] = ht[c], hk[c]
      i = c
    end
    ht[i], hk[i] = t, k
  end

  local function index_of(rows, spec)
    local ix = indexes[rows]
    if ix then return ix end
    ix = { ht = {}, hk = {}, n = 0, exp = {}, keys = 0 }
    for k, list in pairs(rows) do
      local t = expiry(list, spec)
      ix.exp[k], ix.keys = t, ix.keys + 1
      heap_push(ix, t, k)
    end
    indexes[rows] = ix
    return ix
  end

  -- Calls visit(k) for each key whose first entry expires before `watermark`, without
  -- changing the heap (a failed attempt changes nothing): the nodes under the watermark form a
  -- subtree at the root.
  local function each_due(ix, watermark, visit)
    local ht, hk, n, exp = ix.ht, ix.hk, ix.n, ix.exp
    if n == 0 or ht[1] >= watermark then return end
    local stack, top = { 1 }, 1
    while top > 0 do
      local i = stack[top]
      top = top - 1
      local t = ht[i]
      if t < watermark then
        local k = hk[i]
        if exp[k] == t then visit(k) end
        local c = 2 * i
        if c <= n then
          top = top + 1
          stack[top] = c
          if c < n then
            top = top + 1
            stack[top] = c + 1
          end
        end
      end
    end
  end

  -- A batch of a state partition: rows (key -> entries, the state), incoming (key -> the
  -- batch's entries). Returns the changes: key -> its new entries, or false (none left). Of
  -- the keys without records, only those with an entry past the watermark are looked at.
  local function join_batch(rows, incoming, spec, watermark, nxt)
    local changes = {}
    for k, new in pairs(incoming) do
      changes[k] = join_key(k, rows[k], new, spec, watermark, nxt) or false
    end
    if watermark then
      each_due(index_of(rows, spec), watermark, function(k)
        if changes[k] == nil then
          local list, changed = join_key(k, rows[k], nil, spec, watermark, nxt)
          if changed then changes[k] = list or false end
        end
      end)
    end
    return changes
  end

  -- The changes of a successful batch into the rows and their expiry index: the nodes past
  -- the watermark go (their keys' entries were evicted in the batch, or they were stale), each
  -- changed key's next expiry comes in.
  local function apply(rows, changes, spec, watermark)
    local ix = index_of(rows, spec)
    local ht, exp = ix.ht, ix.exp
    if watermark then
      while ix.n > 0 and ht[1] < watermark do heap_pop(ix) end
    end
    for k, list in pairs(changes) do
      local had = rows[k] ~= nil
      rows[k] = list or nil
      local old = exp[k]
      if list then
        if not had then ix.keys = ix.keys + 1 end
        local t = expiry(list, spec)
        exp[k] = t
        if t ~= old then heap_push(ix, t, k) end -- (a node past the watermark went: t is later)
      else
        if had then ix.keys = ix.keys - 1 end
        exp[k] = nil
      end
    end
  end

  -- The number of keys the state will hold once the changes are applied.
  local function keys_after(rows, changes, spec)
    local keys = index_of(rows, spec).keys
    for k, list in pairs(changes) do
      if list and rows[k] == nil then keys = keys + 1 elseif not list and rows[k] ~= nil then keys = keys - 1 end
    end
    return keys
  end

  -- A batch's record (k, {ts, value}) of side `side` added to its key's entries.
  local function add(incoming, k, tv, side)
    if type(k) == "table" then k = key_of(k) end -- an array key: its representative
    tv[3] = side
    local list = incoming[k]
    if list == nil then
      list = {}
      incoming[k] = list
    end
    list[#list + 1] = tv
  end

  -- One process: the reduce side, over both sides' buckets (records come with their side).
  function operators.interval_join(spec, nxt, fin)
    local store = store_of(spec.state, current.part)
    local rows = store.rows or {}
    store.rows = rows
    local incoming = {} -- key -> the batch's entries
    return function(k, tv, side)
      add(incoming, k, tv, side)
    end, function()
      local watermark = spec.watermark
      local changes = join_batch(rows, incoming, spec, watermark, nxt)
      local on_success = current.on_success
      on_success[#on_success + 1] = function()
        apply(rows, changes, spec, watermark)
      end
      fin()
    end
  end

  -- Cluster mode, the map side of both sides (a union of the two): marks each record with its
  -- side (1 left, 2 right) for the terminal, and the task's side for its largest timestamp.
  function operators.join_side(spec, nxt, fin)
    local side = spec.side
    current.join_side = side
    return function(a, b) return nxt(a, b, side) end, fin
  end

  -- Cluster mode's map side: (key, {ts, value}, side) to the key's partition of the repartition
  -- topic, then the task's largest timestamp to every state partition (key nil).
  function terminals.cluster_join_send(t, spec)
    local send, done = W.cluster.sender(t, spec)
    local timestamp, who = W.event_timestamp, spec.mode
    return function(k, v, side)
      if v == nil then error(who .. ": the records must be key/value pairs", 0) end
      send(k, { timestamp(who), v }, side)
    end, function()
      local report, side = current.report, current.join_side
      local top = report and report.max_ts
      if top and side then
        for p = 0, spec.partitions - 1 do send(nil, top, side, p) end
      end
      current.report = nil -- (the watermark is the keyed stage's, not this process's driver's)
      done()
    end
  end

  -- A restore's changelog entry (cluster mode): (side) -> a side's largest time; (key, id)
  -- -> an entry (false: evicted), into store.restoring[key][id] until restored() orders them.
  local function apply_entry(store, kbytes, s)
    dec:set(kbytes)
    local k = dec:decode()
    if #dec == 0 then -- (side): one value only
      slot(store, "tops")[k] = s or nil
      return
    end
    local id = dec:decode()
    if type(k) == "table" then k = key_of(k) end
    local restoring = store.restoring
    if not restoring then -- the entries held (a checkpoint's) by id, as the changelog has them
      restoring = {}
      for key, list in pairs(store.rows or {}) do
        local by_id = slot(restoring, key)
        for i = 1, #list do by_id[list[i][5]] = list[i] end
      end
      store.restoring = restoring
    end
    slot(restoring, k)[id] = s or nil
  end

  local function by_id(a, b) return a[5] < b[5] end

  -- After a restore: each key's entries as a list in order of id.
  local function restored(store)
    local restoring = store.restoring
    if not restoring then return end
    local rows = {}
    for k, entries in pairs(restoring) do
      local list = {}
      for _, e in pairs(entries) do list[#list + 1] = e end
      if #list > 0 then
        sort(list, by_id)
        rows[k] = list
      end
    end
    -- (a new rows table: its expiry index is built at the next batch, from every key)
    store.rows, store.restoring = rows, nil
  end

  -- The changelog writes of a batch's changes (cluster mode): each new entry (given its id),
  -- each entry whose paired flag changed (a new table with the same id), a tombstone for each
  -- entry gone.
  local function put_changes(put, rows, changes)
    for k, list in pairs(changes) do
      local old, was = rows[k], {} -- id -> the kept entry
      local last = 0
      if old then
        for i = 1, #old do was[old[i][5]] = old[i] end
        last = old[#old][5]
      end
      for i = 1, list and #list or 0 do
        local e = list[i]
        local id = e[5]
        if id == nil then
          last = last + 1
          e[5] = last
          put(last, e, k)
        else
          if was[id] ~= e then put(id, e, k) end
          was[id] = nil
        end
      end
      for id in pairs(was) do put(id, nil, k) end
    end
  end

  -- Cluster mode's keyed stage (see the header).
  function operators.cluster_interval_join(spec, nxt, fin)
    local C = W.cluster
    local part = current.part
    local store, r, skip, base = C.prepare(spec, part, apply_entry)
    restored(store)
    local rows, tops = slot(store, "rows"), slot(store, "tops")
    local top1, top2 = tops[1], tops[2]
    local delay1, delay2 = spec.delay1, spec.delay2
    local before1, before2 = top1 and top1 - delay1, top2 and top2 - delay2 -- the sides' watermarks before
    local incoming, late1, late2 = {}, 0, 0
    return C.decoder(spec, skip, function(k, tv, side)
      if k == nil then -- a map task's largest timestamp of its side
        if side == 1 then
          if top1 == nil or tv > top1 then top1 = tv end
        elseif top2 == nil or tv > top2 then
          top2 = tv
        end
        return
      end
      local ts = tv[1]
      if side == 1 then
        if before1 and ts < before1 then
          late1 = late1 + 1
          return
        end
      elseif before2 and ts < before2 then
        late2 = late2 + 1
        return
      end
      add(incoming, k, tv, side)
    end, true), function()
      local watermark = top1 and top2 and min(top1 - delay1, top2 - delay2)
      local changes = join_batch(rows, incoming, spec, watermark, nxt)
      W.report_keys(spec, keys_after(rows, changes, spec))
      C.write_changes(spec, part, store, r, base, function(put)
        put_changes(put, rows, changes)
        if top1 ~= tops[1] then put(1, top1) end
        if top2 ~= tops[2] then put(2, top2) end
      end)
      if late1 + late2 > 0 then
        local accums = current.accums or {}
        current.accums = accums
        accums[spec.late1] = (accums[spec.late1] or 0) + late1
        accums[spec.late2] = (accums[spec.late2] or 0) + late2
      end
      local on_success = current.on_success
      on_success[#on_success + 1] = function()
        apply(rows, changes, spec, watermark)
        tops[1], tops[2] = top1, top2
      end
      fin()
    end
  end
end
