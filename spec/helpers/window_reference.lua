-- Plain-Lua reference implementations of the window operators (processing time) and of
-- event-time windows and sessions, plus their seeded data generators, for spec/window_spec.lua
-- and spec/event_time_spec.lua. Nothing here uses the engine: every expectation is recomputed
-- by brute force from the whole input (no panes, no incremental state).
--
-- Processing time: batch k (1-based) is at time k * batch_ms; a window of L batches sliding
-- every S batches is emitted at every batch k with k % S == 0 and covers the batches
-- max(1, k - L + 1) .. k (batches past the end of the input are empty).
--
-- Event time: per batch, records older than the watermark as it stood at the end of the
-- previous batch are late; the watermark after a batch is the largest timestamp accepted so far
-- minus the delay.
--
--   package.path = "spec/helpers/?.lua;" .. package.path
--   local WR = require("window_reference")

local H = require("engine")

local WR = {}

---------------------------------------------------------------------------------------------
-- Processing-time windows
---------------------------------------------------------------------------------------------

-- The batch numbers k in 1..nbatches at which a window sliding every S batches is emitted.
function WR.emissions(nbatches, S)
  local out = {}
  for k = S, nbatches, S do out[#out + 1] = k end
  return out
end

-- The times (ms) of those emissions.
function WR.emission_times(nbatches, S, batch_ms)
  local out = {}
  for i, k in ipairs(WR.emissions(nbatches, S)) do out[i] = k * (batch_ms or 1000) end
  return out
end

-- The records of the window of L batches ending at batch k, oldest batch first.
function WR.window_records(batches, k, L)
  local out = {}
  for j = math.max(1, k - L + 1), k do
    for _, rec in ipairs(batches[j] or {}) do out[#out + 1] = rec end
  end
  return out
end

-- True when a record of key `key` (pairs {k, v}) arrived in batches 1..k.
local function keys_seen(batches, k)
  local seen = {}
  for j = 1, math.min(k, #batches) do
    for _, kv in ipairs(batches[j]) do seen[kv[1]] = true end
  end
  return seen
end

-- window(len, slide): per emission, the raw records of the window.
function WR.window(batches, nbatches, L, S)
  local out = {}
  for i, k in ipairs(WR.emissions(nbatches, S)) do out[i] = WR.window_records(batches, k, L) end
  return out
end

-- reduce_by_window(f, len, slide[, inverse]) over single-value records: per emission a list
-- of zero or one record. Without an inverse an empty window gives no record; with one, the
-- window's (only) key stays once a record has arrived, at `neutral` when the window is empty.
function WR.reduce_by_window(batches, nbatches, f, L, S, opts)
  opts = opts or {}
  local out, seen_any = {}, false
  for i, k in ipairs(WR.emissions(nbatches, S)) do
    for j = 1, math.min(k, #batches) do
      if #batches[j] > 0 then seen_any = true end
    end
    local recs = WR.window_records(batches, k, L)
    local v = H.ref.reduce(recs, f)
    if v ~= nil then
      out[i] = { v }
    elseif opts.inverse and seen_any then
      out[i] = { H.deep_copy(opts.neutral) }
    else
      out[i] = {}
    end
  end
  return out
end

-- count_by_window(len, slide) = map(1):reduce_by_window(+, -): no record until the first
-- record arrives, then the window's count (0 once every record expired).
function WR.count_by_window(batches, nbatches, L, S)
  local ones = {}
  for j, b in ipairs(batches) do
    ones[j] = {}
    for i = 1, #b do ones[j][i] = 1 end
  end
  return WR.reduce_by_window(ones, nbatches, function(a, b) return a + b end, L, S,
    { inverse = true, neutral = 0 })
end

-- reduce_by_key_and_window(f, len, slide, opts) over pairs {k, v}: per emission a map
-- key -> value. Without opts.inverse: the keys with records in the window, reduced with f.
-- With opts.inverse: every key that ever had a record (up to this batch), its value the
-- window's reduce or opts.neutral when none of its records is left. opts.filter(k, v) keeps
-- only the keys for which it returns true.
function WR.reduce_by_key_and_window(batches, nbatches, f, L, S, opts)
  opts = opts or {}
  local out = {}
  for i, k in ipairs(WR.emissions(nbatches, S)) do
    local m = H.ref.reduce_by_key(WR.window_records(batches, k, L), f)
    if opts.inverse then
      for key in pairs(keys_seen(batches, k)) do
        if m[key] == nil then m[key] = H.deep_copy(opts.neutral) end
      end
    end
    if opts.filter then
      for key, v in pairs(m) do
        if not opts.filter(key, v) then m[key] = nil end
      end
    end
    out[i] = m
  end
  return out
end

-- count_by_value_and_window(len, slide) over single values: per emission a map
-- value -> count of the values in the window (keys with count 0 are absent).
function WR.count_by_value_and_window(batches, nbatches, L, S)
  local out = {}
  for i, k in ipairs(WR.emissions(nbatches, S)) do
    out[i] = H.ref.count_by_value(WR.window_records(batches, k, L))
  end
  return out
end

-- group_by_key_and_window(len, slide) over pairs: per emission a map key -> sorted values.
function WR.group_by_key_and_window(batches, nbatches, L, S)
  local out = {}
  for i, k in ipairs(WR.emissions(nbatches, S)) do
    local m = {}
    for _, kv in ipairs(WR.window_records(batches, k, L)) do
      local list = m[kv[1]]
      if not list then
        list = {}
        m[kv[1]] = list
      end
      list[#list + 1] = kv[2]
    end
    for key, list in pairs(m) do m[key] = H.sorted(list) end
    out[i] = m
  end
  return out
end

---------------------------------------------------------------------------------------------
-- Event time
---------------------------------------------------------------------------------------------

-- Splits every batch into accepted and late records, simulating the watermark. ts(rec)
-- gives a record's timestamp (ms); delay is the watermark delay (ms). Returns per batch:
-- accepted[b] = list of {ts, rec}, late[b] = list of records, and watermark[b] = the
-- watermark at the end of batch b (nil while no record was accepted).
function WR.simulate_watermark(batches, nbatches, ts, delay)
  local accepted, late, watermark = {}, {}, {}
  local max_ts, prev_wm = nil, nil
  for b = 1, nbatches do
    accepted[b], late[b] = {}, {}
    for _, rec in ipairs(batches[b] or {}) do
      local t = ts(rec)
      if prev_wm ~= nil and t < prev_wm then
        late[b][#late[b] + 1] = rec
      else
        accepted[b][#accepted[b] + 1] = { t, rec }
        if max_ts == nil or t > max_ts then max_ts = t end
      end
    end
    watermark[b] = max_ts and max_ts - delay
    prev_wm = watermark[b]
  end
  return accepted, late, watermark
end

-- The starts of the windows [start, start + len) with start a multiple of slide that contain
-- t, computed by scanning every multiple of slide in (t - len, t].
function WR.window_starts(t, len, slide)
  local out = {}
  local first = math.ceil((t - len + 1) / slide) * slide
  for start = first, t, slide do
    if start <= t and t < start + len then out[#out + 1] = start end
  end
  return out
end

-- Event-time reduce_by_key_and_window. Records are turned into a key and value by kv(rec)
-- (two results). opts: delay, len, slide (ms), f, emit = "final" | "update", keep(rec) (a
-- filter applied after the timestamp: records it refuses still move the watermark).
-- Returns per batch: emitted = list of {key, {start, end, value}}, late = list of records,
-- and the total of late records after each batch.
function WR.event_windows(batches, nbatches, ts, kv, opts)
  local accepted, late, watermark = WR.simulate_watermark(batches, nbatches, ts, opts.delay)
  local len, slide, f = opts.len, opts.slide, opts.f
  local final = (opts.emit or "final") == "final"
  -- every accepted record so far, as {key, start, value}; closed windows are remembered so
  -- that a window is emitted once
  local contents = {} -- start -> key -> list of values
  local closed = {} -- start -> true once emitted (final) or passed by the watermark
  local emitted, late_totals, total = {}, {}, 0
  for b = 1, nbatches do
    local touched = {} -- start -> key -> true
    for _, tr in ipairs(accepted[b]) do
      local t, rec = tr[1], tr[2]
      if not opts.keep or opts.keep(rec) then
        local key, v = kv(rec)
        for _, start in ipairs(WR.window_starts(t, len, slide)) do
          assert(not closed[start], "reference: an accepted record in a closed window")
          contents[start] = contents[start] or {}
          local list = contents[start][key] or {}
          contents[start][key] = list
          list[#list + 1] = v
          touched[start] = touched[start] or {}
          touched[start][key] = true
        end
      end
    end
    local out = {}
    local wm = watermark[b]
    if final then
      for start, keys in pairs(contents) do
        if wm ~= nil and start + len <= wm then
          for key, list in pairs(keys) do
            out[#out + 1] = { key, { start = start, ["end"] = start + len, value = H.ref.reduce(list, f) } }
          end
        end
      end
    else
      for start, keys in pairs(touched) do
        for key in pairs(keys) do
          out[#out + 1] = { key, { start = start, ["end"] = start + len,
            value = H.ref.reduce(contents[start][key], f) } }
        end
      end
    end
    for start in pairs(contents) do
      if wm ~= nil and start + len <= wm then
        contents[start] = nil
        closed[start] = true
      end
    end
    total = total + #late[b]
    emitted[b], late_totals[b] = out, total
  end
  return emitted, late, late_totals, watermark
end

-- Event-time session windows per key: the accepted records of a key whose timestamps are
-- less than `gap` apart (chained) are one session; a session is emitted as
-- {key, {start, end = last + gap, values = sorted values, count}} in the first batch whose
-- watermark is >= its end. Recomputed from all pending records of each key at every batch.
function WR.sessions(batches, nbatches, ts, kv, opts)
  local accepted, late, watermark = WR.simulate_watermark(batches, nbatches, ts, opts.delay)
  local gap = opts.gap
  local pending = {} -- key -> list of {ts, value}
  local emitted = {}
  for b = 1, nbatches do
    for _, tr in ipairs(accepted[b]) do
      local key, v = kv(tr[2])
      pending[key] = pending[key] or {}
      table.insert(pending[key], { tr[1], v })
    end
    local out, wm = {}, watermark[b]
    for key, list in pairs(pending) do
      table.sort(list, function(a, c) return a[1] < c[1] end)
      local sessions, cur = {}, nil
      for _, e in ipairs(list) do
        if cur and e[1] < cur.last + gap then
          cur.last = math.max(cur.last, e[1])
          cur.events[#cur.events + 1] = e
        else
          cur = { start = e[1], last = e[1], events = { e } }
          sessions[#sessions + 1] = cur
        end
      end
      local keep = {}
      for _, s in ipairs(sessions) do
        if wm ~= nil and s.last + gap <= wm then
          local values = {}
          for i, e in ipairs(s.events) do values[i] = e[2] end
          out[#out + 1] = { key, { start = s.start, ["end"] = s.last + gap,
            values = H.sorted(values), count = #values } }
        else
          for _, e in ipairs(s.events) do keep[#keep + 1] = e end
        end
      end
      pending[key] = #keep > 0 and keep or nil
    end
    emitted[b] = out
  end
  return emitted, late, watermark
end

---------------------------------------------------------------------------------------------
-- Seeded data
---------------------------------------------------------------------------------------------

WR.KEYS = { "apple", "banana", "cherry", "date", "elder", 1, 2, 3.5, true, "fig" }

-- `nbatches` batches of pairs {k, v} (keys from `keys`, integer values in [lo, hi]); some
-- batches empty: every `empty_every`-th one and those listed in `empty`.
function WR.random_pair_batches(nbatches, seed, opts)
  opts = opts or {}
  local keys = opts.keys or WR.KEYS
  math.randomseed(seed or 42)
  local out = {}
  local empty = {}
  for _, j in ipairs(opts.empty or {}) do empty[j] = true end
  for j = 1, nbatches do
    local n = math.random(opts.min or 0, opts.max or 30)
    local b = {}
    if not empty[j] and not (opts.empty_every and j % opts.empty_every == 0) then
      for i = 1, n do b[i] = { keys[math.random(#keys)], math.random(opts.lo or -20, opts.hi or 50) } end
    end
    out[j] = b
  end
  return out
end

-- Single values from pair batches (their values, or their keys with which = 1).
function WR.column(batches, which)
  local out = {}
  for j, b in ipairs(batches) do
    out[j] = {}
    for i, kv in ipairs(b) do out[j][i] = kv[which or 2] end
  end
  return out
end

-- Event records { key, ts, value } for `nbatches` batches, shuffled within each batch: batch b
-- holds records whose timestamps are around b * batch_ms, up to `spread` ms older and up to
-- `ahead` ms newer, so some are late once the watermark moves; every `empty_every`-th batch
-- is empty.
function WR.random_events(nbatches, seed, opts)
  opts = opts or {}
  local keys = opts.keys or { "a", "b", "c", "d", 7 }
  local batch_ms, spread, ahead = opts.batch_ms or 1000, opts.spread or 6000, opts.ahead or 500
  math.randomseed(seed or 42)
  local out = {}
  for b = 1, nbatches do
    local list = {}
    if not (opts.empty_every and b % opts.empty_every == 0) then
      for i = 1, math.random(opts.min or 0, opts.max or 25) do
        local ts = b * batch_ms - math.random(0, spread) + math.random(0, ahead)
        if ts < 0 then ts = 0 end
        list[i] = { keys[math.random(#keys)], ts, math.random(1, 100) }
      end
    end
    for i = #list, 2, -1 do -- shuffle
      local j = math.random(i)
      list[i], list[j] = list[j], list[i]
    end
    out[b] = list
  end
  return out
end

---------------------------------------------------------------------------------------------
-- Comparison
---------------------------------------------------------------------------------------------

-- Sorted text forms of a list of records (a multiset that assert.are.same can compare and
-- print readably).
function WR.bag(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = H.repr(v) end
  table.sort(out)
  return out
end

return WR
