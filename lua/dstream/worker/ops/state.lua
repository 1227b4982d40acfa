-- dstream/worker/ops/state.lua: keyed state kept in a worker's Lua state between batches.
--
-- A stateful operator's keys are hash-partitioned; partition p of every batch runs on worker
-- p % workers (task affinity), so its state stays in one VM and never crosses a thread. A task
-- works on a copy of what it changes and the copy becomes the state only when the whole task
-- succeeded (worker.current.on_success): a failed, retried task starts from the same state.
-- Registered into dstream.worker (see its list of operator modules).
return function(W)
  local operators, terminals = W.operators, W.terminals
  local shipped, current = W.shipped, W.current
  local pairs, error, next = pairs, error, next

  local stores = require("dstream.worker.store")
  local store_of = stores.store_of
  local task = require("dstream.worker.task")
  local key_of, rekey = task.key_of, task.rekey
  local type = type
  local table_new = require("table.new")

  -- How many keys a partition keeps, for the dstream_state_keys metric: an accumulator update
  -- (worker.current.accums) that counts only if the task succeeds; the driver sums partitions.
  local function report_keys(spec, n)
    if not spec.keys_acc then return end
    local accums = current.accums or {}
    current.accums = accums
    accums[spec.keys_acc] = { [current.part] = n }
  end

  -- The `values` of keys that got no data in a batch: shared, so read-only.
  local NO_VALUES = setmetatable({}, {
    __newindex = function() error("update_state_by_key: the values array is read-only", 2) end,
  })

  -- A batch of update_state_by_key: f(values, state, k) for every key of `old` (values or
  -- NO_VALUES) and for the n new keys in `order`; the new states and their count. (Also run
  -- by cluster mode's keyed stage, dstream.worker.ops.cluster.) size: the keys expected, if
  -- known (the table starts at that size: no rehashing at every doubling while it fills).
  function W.next_states(f, old, values, order, n, size)
    local new, keys = table_new(0, size or 0), 0
    for k, state in next, old do
      local s = f(values[k] or NO_VALUES, state, k)
      if s ~= nil then
        new[k] = s
        keys = keys + 1
      end
    end
    for i = 1, n do
      local k = order[i]
      if old[k] == nil then
        local s = f(values[k], nil, k)
        if s ~= nil then
          new[k] = s
          keys = keys + 1
        end
      end
    end
    return new, keys
  end
  W.report_keys = report_keys

  -- A task's values by key, keys in the order they came: push(k, v) for each pair, then
  -- take() -> values (key -> array), order, n, once (an array key counts as its representative).
  -- size: the keys expected, if known (the last batch's).
  function W.value_lists(size)
    local values, order, n = table_new(0, size or 0), table_new(size or 0, 0), 0
    return function(k, v)
      local list = values[k]
      if list == nil and type(k) == "table" then -- an array key: its representative
        k = key_of(k)
        list = values[k]
      end
      if list == nil then
        -- { v }: the table and its array part in one allocation (LuaJIT puts a constructor's
        -- small array beside the table); {} then list[1] = v made a second one, for every key
        -- of every batch.
        values[k] = { v }
        n = n + 1
        order[n] = k
      else
        list[#list + 1] = v
      end
    end, function()
      local v, o = values, order
      values, order = nil, nil -- a trace may keep push alive: not the batch's values
      return v, o, n
    end
  end

  -- fn(values, state) or, with the option with_key, fn(key, values, state), called as f(values, state, key).
  function W.state_fn(spec)
    local f = shipped(spec.fn)
    if spec.with_key then
      local keyed = f
      f = function(values, state, k) return keyed(k, values, state) end
    end
    return f
  end

  -- update_state_by_key: fn(values, state) for every key that has state or new values;
  -- fn(key, values, state) with the option with_key.
  function operators.update_state(spec, _, fin)
    local f = W.state_fn(spec)
    local store = store_of(spec.state, current.part)
    -- Sized as the last batch's (the batches of a stream look alike).
    local push, take = W.value_lists(store.batch_keys)
    return push, function()
      local values, order, n = take()
      local new, keys = W.next_states(f, store.states, values, order, n, math.max(store.keys or 0, n))
      report_keys(spec, keys)
      local on_success = current.on_success
      on_success[#on_success + 1] = function() store.states, store.keys, store.batch_keys = new, keys, n end
      fin()
    end
  end

  -- The State handed to map_with_state's function; one per task, rebound to each key.
  local State = {}
  State.__index = State
  function State:exists() return self._get(self._key) ~= nil end
  function State:get() return self._get(self._key) end
  function State:set(v)
    if self._timing_out then error("map_with_state: a state that is timing out cannot be set", 2) end
    if v == nil then error("map_with_state: state:set(nil); use state:remove()", 2) end
    self._set(self._key, v)
  end
  function State:update(v) return self:set(v) end
  function State:remove() self._set(self._key, nil) end
  function State:is_timing_out() return self._timing_out end

  local REMOVED = {}
  W.REMOVED = REMOVED -- a key removed in map_with_state's changes

  -- map_with_state: fn(key, value, state) per record; only keys with data (or timing out)
  -- are touched. Emits what fn returns.
  function operators.map_state(spec, nxt, fin)
    local f = shipped(spec.fn)
    local store = store_of(spec.state, current.part)
    local timeout, now = spec.timeout_ms, current.time
    local states, touched = store.states, store.touched
    local changes, seen = {}, {}
    local state = setmetatable({ _timing_out = false }, State)
    state._get = function(k)
      local c = changes[k]
      if c == REMOVED then return nil end
      if c ~= nil then return c end
      return states[k]
    end
    state._set = function(k, v) changes[k] = v == nil and REMOVED or v end
    return function(k, v)
      if k == nil then error("map_with_state: the records must be key/value pairs", 0) end
      if type(k) == "table" then k = key_of(k) end -- an array key: its representative
      seen[k] = true
      state._key = k
      return nxt(f(k, v, state))
    end, function()
      if timeout then
        state._timing_out = true
        for k, t in pairs(touched) do
          if not seen[k] and now - t >= timeout and states[k] ~= nil then
            state._key = k
            nxt(f(k, nil, state))
            changes[k] = REMOVED
          end
        end
        state._timing_out = false
      end
      if spec.keys_acc then
        local keys = 0
        for k in pairs(states) do if changes[k] ~= REMOVED then keys = keys + 1 end end
        for k, c in pairs(changes) do if c ~= REMOVED and states[k] == nil then keys = keys + 1 end end
        report_keys(spec, keys)
      end
      current.state_changes = changes -- (what cluster mode writes to the changelog)
      local on_success = current.on_success
      on_success[#on_success + 1] = function()
        for k, c in pairs(changes) do
          if c == REMOVED then
            states[k], touched[k] = nil, nil
          else
            states[k] = c
          end
        end
        for k in pairs(seen) do
          if states[k] ~= nil then touched[k] = now end
        end
      end
      fin()
    end
  end

  -- Loads (k, state) pairs as initial state (map_with_state's `initial`).
  function operators.load_state(spec, _, fin)
    local store = store_of(spec.state, current.part)
    local loaded = {}
    return function(k, v)
      if type(k) == "table" then k = key_of(k) end
      loaded[k] = v
    end, function()
      local on_success = current.on_success
      on_success[#on_success + 1] = function()
        for k, v in pairs(loaded) do
          store.states[k] = v
          store.touched[k] = current.time
        end
      end
      fin()
    end
  end

  -- Checkpoints: a partition's whole store (keyed state, panes, windows, sessions) as bytes,
  -- and back. Plain data only: string.buffer refuses functions and userdata in a state.
  local sbuf = require("string.buffer")
  function terminals.snapshot_store(task, spec)
    return function() end, function()
      local bytes = sbuf.encode(store_of(spec.state, current.part))
      W.emit(task, 0, 1, false, { bytes })
    end
  end

  -- A store's tables keyed by key, by field (rekey_store): decoded array keys are new tables,
  -- made their representatives again (task.key_of). Fields of stores that this list misses
  -- would lose their array keys' identity: a store's new keyed table goes here.
  local KEYED = { "states", "touched", "running", "sessions", "rows" } -- key -> value
  local KEYED_BY = { "panes", "windows" }                              -- time -> key -> value
  local function rekey_store(store)
    for _, name in ipairs(KEYED) do
      if type(store[name]) == "table" then rekey(store[name]) end
    end
    for _, name in ipairs(KEYED_BY) do
      if type(store[name]) == "table" then
        for _, t in pairs(store[name]) do rekey(t) end
      end
    end
    return store
  end

  function terminals.restore_store(_, spec)
    return function() end, function()
      local restored, part, id = rekey_store(sbuf.decode(spec.bytes)), current.part, spec.state
      local on_success = current.on_success
      on_success[#on_success + 1] = function() stores.replace(id, part, restored) end
    end
  end

  -- A stage that only updates state ends here.
  function terminals.discard()
    return function() end, function() end
  end

  -- The reader of a state source: every (key, state) of this task's partition, or, with a
  -- time, the result the state's operator kept for that batch (W.kept_result).
  function W.read_state(id, part, push, time)
    local t = time and W.kept_result(id, part, time) or store_of(id, part).states
    for k, v in pairs(t) do push(k, v) end
  end

  -- Number of keys per state id in this worker (for status and metrics).
  function W.state_keys()
    return stores.key_counts()
  end
end
