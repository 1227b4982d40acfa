-- Plain-Lua reference implementations of the keyed operators, per-key state and their data
-- generators, for the keyed specs. Nothing here uses the engine. A pair is a table {k, v}; a
-- batch is a list of pairs; a "map" is a Lua table key -> value.
--
--   package.path = "spec/helpers/?.lua;" .. package.path
--   local K = require("keyed_reference")

local H = require("engine")

local K = {}

---------------------------------------------------------------------------------------------
-- Seeded data
---------------------------------------------------------------------------------------------

-- Keys of every allowed type: strings, integers (negative and zero), floats, booleans.
K.MIXED_KEYS = {
  "apple", "banana", "cherry", "", "a b", "1", "true",
  0, 1, 2, 3, -7, 42, 1e9,
  0.5, -2.25, 3.125, 1e-3,
  true, false,
}

-- n pairs {k, v} with keys drawn from `keys` (default MIXED_KEYS) and integer values in
-- [lo, hi], seeded.
function K.random_pairs(n, seed, keys, lo, hi)
  keys = keys or K.MIXED_KEYS
  math.randomseed(seed or 42)
  local t = {}
  for i = 1, n do t[i] = { keys[math.random(#keys)], math.random(lo or -50, hi or 50) } end
  return t
end

-- `nbatches` batches of pairs; every `empty_every`-th batch is empty (when given); sizes vary.
function K.random_batches(nbatches, seed, opts)
  opts = opts or {}
  math.randomseed(seed or 42)
  local seeds, sizes = {}, {}
  for i = 1, nbatches do
    seeds[i] = math.random(1, 1e6)
    sizes[i] = math.random(opts.min or 0, opts.max or 60)
  end
  local out = {}
  for i = 1, nbatches do
    if opts.empty_every and i % opts.empty_every == 0 then
      out[i] = {}
    else
      out[i] = K.random_pairs(sizes[i], seeds[i], opts.keys, opts.lo, opts.hi)
    end
  end
  return out
end

---------------------------------------------------------------------------------------------
-- Comparison helpers
---------------------------------------------------------------------------------------------

-- A map from the collected records of a pair batch ({k, v} tables); fails (returns nil and a
-- message) when a key appears twice.
function K.unique_map(records)
  local m = {}
  for _, kv in ipairs(records) do
    if type(kv) ~= "table" then return nil, "record is not a pair: " .. H.repr(kv) end
    local k = kv[1]
    if k == nil then return nil, "record without a key" end
    if m[k] ~= nil then return nil, "key " .. H.repr(k) .. " appears twice" end
    m[k] = kv[2] == nil and K.NIL or kv[2]
  end
  return m
end

-- Marker for a nil value inside maps built from records.
K.NIL = setmetatable({}, { __tostring = function() return "nil" end })

-- A text form of a value, fast for arrays (records such as {k, {l, r}} with holes allowed);
-- other tables fall back to H.repr.
function K.repr(v)
  if type(v) ~= "table" then return H.repr(v) end
  local n, count = table.maxn(v), 0
  for _ in pairs(v) do count = count + 1 end
  local parts, present = {}, 0
  for i = 1, n do
    if v[i] ~= nil then present = present + 1 end
    parts[i] = v[i] == nil and "nil" or K.repr(v[i])
  end
  if present ~= count then return H.repr(v) end
  return "[" .. table.concat(parts, ",") .. "]"
end

-- A multiset of records: K.repr(record) -> number of occurrences.
function K.multiset(list)
  local m = {}
  for _, v in ipairs(list) do
    local r = K.repr(v)
    m[r] = (m[r] or 0) + 1
  end
  return m
end

-- Copy of a map whose values are arrays, each array sorted (multiset form).
function K.sort_values(map)
  local out = {}
  for k, vs in pairs(map) do out[k] = H.sorted(vs) end
  return out
end

---------------------------------------------------------------------------------------------
-- Keyed operators
---------------------------------------------------------------------------------------------

-- key -> array of values in arrival order.
function K.group_by_key(pairs_list)
  local m = {}
  for _, kv in ipairs(pairs_list) do
    local k = kv[1]
    local list = m[k]
    if not list then
      list = {}
      m[k] = list
    end
    list[#list + 1] = kv[2]
  end
  return m
end

-- key -> combiner, folding sequentially: create(first), then merge_value(c, v).
function K.combine_by_key(pairs_list, create, merge_value)
  local m = {}
  for _, kv in ipairs(pairs_list) do
    local k, v = kv[1], kv[2]
    if m[k] == nil then m[k] = create(v) else m[k] = merge_value(m[k], v) end
  end
  return m
end

-- key -> number of pairs with that key.
function K.count_by_key(pairs_list)
  local m = {}
  for _, kv in ipairs(pairs_list) do m[kv[1]] = (m[kv[1]] or 0) + 1 end
  return m
end

-- list of {k, f(v)}: f sees only the value, and only its first result is kept.
function K.map_values(pairs_list, f)
  local out = {}
  for i, kv in ipairs(pairs_list) do out[i] = { kv[1], (f(kv[2])) } end
  return out
end

-- list of {k, x} for every x of f(v), which returns an array or a generic-for iterator.
function K.flat_map_values(pairs_list, f)
  local out = {}
  for _, kv in ipairs(pairs_list) do
    local r, s, c = f(kv[2])
    if type(r) == "table" then
      for _, x in ipairs(r) do out[#out + 1] = { kv[1], x } end
    elseif r ~= nil then
      for x in r, s, c do out[#out + 1] = { kv[1], x } end
    end
  end
  return out
end

-- Joins as lists of {k, {left, right}}; mode is "join", "left_outer_join",
-- "right_outer_join" or "full_outer_join". The missing side is nil.
function K.join(left, right, mode)
  mode = mode or "join"
  local lm, rm = K.group_by_key(left), K.group_by_key(right)
  local keys, seen = {}, {}
  for _, kv in ipairs(left) do
    if not seen[kv[1]] then seen[kv[1]] = true; keys[#keys + 1] = kv[1] end
  end
  for _, kv in ipairs(right) do
    if not seen[kv[1]] then seen[kv[1]] = true; keys[#keys + 1] = kv[1] end
  end
  local keep_left = mode == "left_outer_join" or mode == "full_outer_join"
  local keep_right = mode == "right_outer_join" or mode == "full_outer_join"
  local out = {}
  for _, k in ipairs(keys) do
    local ls, rs = lm[k] or {}, rm[k] or {}
    if #ls > 0 and #rs > 0 then
      for _, l in ipairs(ls) do
        for _, r in ipairs(rs) do out[#out + 1] = { k, { l, r } } end
      end
    elseif #ls > 0 and keep_left then
      for _, l in ipairs(ls) do out[#out + 1] = { k, { l, nil } } end
    elseif #rs > 0 and keep_right then
      for _, r in ipairs(rs) do out[#out + 1] = { k, { nil, r } } end
    end
  end
  return out
end

-- key -> {sorted left values, sorted right values} for every key of either side.
function K.cogroup(left, right)
  local lm, rm = K.group_by_key(left), K.group_by_key(right)
  local out = {}
  for k, ls in pairs(lm) do out[k] = { H.sorted(ls), H.sorted(rm[k] or {}) } end
  for k, rs in pairs(rm) do
    if not out[k] then out[k] = { {}, H.sorted(rs) } end
  end
  return out
end

---------------------------------------------------------------------------------------------
-- Per-key state
---------------------------------------------------------------------------------------------

-- update_state_by_key over a list of batches: fn(values, state) is called for every key that
-- has state or new values (values = {} when none came); nil removes the key. Returns the
-- state map after each batch (deep copies).
function K.update_state_fold(batches, fn)
  local state = {}
  local snapshots = {}
  for i, batch in ipairs(batches) do
    local values = K.group_by_key(batch)
    local new = {}
    for k, s in pairs(state) do
      local r = fn(values[k] or {}, H.deep_copy(s))
      if r ~= nil then new[k] = r end
    end
    for k, vs in pairs(values) do
      if state[k] == nil then
        local r = fn(vs, nil)
        if r ~= nil then new[k] = r end
      end
    end
    state = new
    snapshots[i] = H.deep_copy(state)
  end
  return snapshots
end

local function pack(...) return { n = select("#", ...), ... } end

-- A State with the contract's API over a plain table.
local State = {}
State.__index = State
function State:get() return self.map[self.key] end
function State:exists() return self.map[self.key] ~= nil end
function State:set(v) self.map[self.key] = v end
function State:update(v) self.map[self.key] = v end
function State:remove() self.map[self.key] = nil end
function State:is_timing_out() return self.timing_out end

-- map_with_state over a list of batches, batch k at time k * batch_ms. fn(key, value, state)
-- runs for every record in arrival order; returning one value gives a record, two a pair
-- ({k, v}). With timeout_ms, a key whose state exists and that got no data for timeout_ms
-- (now - last data time >= timeout_ms) gets one call with value nil and
-- state:is_timing_out() true, then is removed. A key's "last data time" is the last batch in
-- which it got data and had state afterwards (initial keys count as touched at the first
-- batch). Returns per batch: emitted records (list) and the state map (deep copy).
function K.map_with_state(batches, fn, opts)
  opts = opts or {}
  local batch_ms = opts.batch_ms or 1000
  local map, touched = {}, {}
  for k, v in pairs(opts.initial or {}) do
    map[k] = H.deep_copy(v)
    touched[k] = batch_ms
  end
  local emitted, snapshots = {}, {}
  for i, batch in ipairs(batches) do
    local now = i * batch_ms
    local out, seen = {}, {}
    local st = setmetatable({ map = map, timing_out = false }, State)
    for _, kv in ipairs(batch) do
      st.key = kv[1]
      seen[kv[1]] = true
      local r = pack(fn(kv[1], kv[2], st))
      if r.n >= 2 then out[#out + 1] = { r[1], r[2] } else out[#out + 1] = r[1] end
    end
    if opts.timeout_ms then
      st.timing_out = true
      local expired = {}
      for k, t in pairs(touched) do
        if not seen[k] and now - t >= opts.timeout_ms and map[k] ~= nil then expired[#expired + 1] = k end
      end
      for _, k in ipairs(expired) do
        st.key = k
        local r = pack(fn(k, nil, st))
        if r.n >= 2 then out[#out + 1] = { r[1], r[2] } else out[#out + 1] = r[1] end
        map[k] = nil
      end
      st.timing_out = false
    end
    for k in pairs(touched) do
      if map[k] == nil then touched[k] = nil end
    end
    for k in pairs(seen) do
      if map[k] ~= nil then touched[k] = now end
    end
    emitted[i] = out
    snapshots[i] = H.deep_copy(map)
  end
  return emitted, snapshots
end

return K
