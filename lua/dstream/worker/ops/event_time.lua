-- dstream/worker/ops/event_time.lua: the worker side of event time: timestamps, late records,
-- event-time windows and session windows.
--
-- The event_time operator computes a record's timestamp and leaves it in current.ts while the
-- record travels down the fused pipeline (no table per record); a window operator in the same
-- stage reads it there. Records older than the watermark of the previous batches are late:
-- counted, and kept for late_records() when asked. Each task reports its largest timestamp and
-- its late records (side outputs -3 and -2); the driver turns the largest timestamp of all
-- tasks into the watermark that closes windows. Window state is keyed state (ops_state):
-- windows[start][key] = value, on the worker that owns the key's partition.
-- Registered into dstream.worker (see its list of operator modules).
return function(W)
  local operators, terminals = W.operators, W.terminals
  local shipped, current, emit = W.shipped, W.current, W.emit
  local store_of = require("dstream.worker.store").store_of
  local protocol = require("dstream.protocol")
  local task_mod = require("dstream.worker.task")
  local key_of, buckets, emit_buckets = task_mod.key_of, task_mod.buckets, task_mod.emit_buckets
  local slot = task_mod.slot
  local pairs, floor, type, error = pairs, math.floor, type, error

  -- Forgets the windows (by start) of length len that the watermark has closed for good.
  local function drop_closed(windows, len, watermark)
    if not watermark then return end
    for start in pairs(windows) do
      if start + len <= watermark then windows[start] = nil end
    end
  end

  local function report()
    local r = current.report
    if not r then
      r = { max_ts = nil, late = 0, late_keys = {}, late_values = {}, late_pairs = nil }
      current.report = r
    end
    return r
  end

  -- Side outputs of a task: -3 { {max_ts, late} }, -2 the late records themselves.
  function W.emit_report(task)
    local r = current.report
    emit(task, protocol.TARGET_WATERMARK, 1, false, { { r.max_ts or false, r.late } })
    if #r.late_keys > 0 then
      emit(task, protocol.TARGET_LATE, #r.late_keys, r.late_pairs, r.late_keys, r.late_values)
    end
  end

  function operators.event_time(spec, nxt, fin)
    local f = shipped(spec.fn)
    local watermark, keep_late = spec.watermark, spec.keep_late
    local r = report()
    return function(a, b)
      local ts = f(a, b)
      if type(ts) ~= "number" or ts ~= ts then
        error("event_time: the timestamp function must return a number (ms), got " .. tostring(ts), 0)
      end
      if watermark and ts < watermark then -- late: older than the watermark
        r.late = r.late + 1
        if keep_late then
          local n = #r.late_keys + 1
          r.late_keys[n], r.late_values[n] = a, b
          r.late_pairs = b ~= nil
        end
        return
      end
      local m = r.max_ts
      if m == nil or ts > m then r.max_ts = ts end
      current.ts = ts
      return nxt(a, b)
    end, fin
  end

  local function timestamp(who)
    local ts = current.ts
    if ts == nil then
      error(who .. ": no event time: call event_time(fn) in the same stage, before any shuffle", 0)
    end
    return ts
  end

  -- Folds event-time pairs per (window start, key): returns push(k, v) and acc (start -> key ->
  -- value). f folds a value into a partial (from create(v) when given). Cluster mode's map
  -- side (dstream.worker.ops.cluster_window) folds the same way, and counts in firsts (start
  -- -> key -> n) the records whose earliest window is start: a partial found late there
  -- counts its records once each (a record's earliest window is the first to close).
  function W.event_window_acc(spec, firsts)
    local f, who = shipped(spec.fn), spec.who
    local create = spec.create and shipped(spec.create)
    local len, slide = spec.len, spec.slide
    local acc = {}
    return function(k, v)
      if v == nil then error(who .. ": the records must be key/value pairs", 0) end
      local ts = timestamp(who)
      -- Windows [start, start + len) with start a multiple of slide that contain ts.
      local last = floor(ts / slide) * slide
      local first = floor((ts - len) / slide) * slide + slide
      for start = last, first, -slide do
        local w = slot(acc, start)
        local old = w[k]
        if old == nil then
          local tk = type(k)
          if tk ~= "string" and tk ~= "number" or k ~= k then -- an array key, or no key
            k = key_of(k, who, v)
            old = w[k]
          end
        end
        if old ~= nil then
          w[k] = f(old, v)
        elseif create then
          w[k] = create(v)
        else
          w[k] = v
        end
      end
      if firsts and first <= last then -- (k is the representative of an array key here)
        local c = slot(firsts, first)
        c[k] = (c[k] or 0) + 1
      end
    end, acc
  end

  -- Map side of an event-time window: combines per (window start, key), then hashes the key.
  -- Emits (key, {start, value}) pairs into the key's bucket. With spec.create
  -- (group_by_key_and_window) a key's first value in a window becomes create(v).
  function terminals.event_window_combine(task, spec)
    local nparts, who = spec.partitions, spec.who
    local push, acc = W.event_window_acc(spec)
    local function finish()
      local keys, values, counts = {}, {}, {}
      for start, w in pairs(acc) do
        for k, v in pairs(w) do
          local t = W.key_hash(k, who) % nparts
          local n = (counts[t] or 0) + 1
          if n == 1 then keys[t], values[t] = {}, {} end
          keys[t][n], values[t][n] = k, { start, v }
          counts[t] = n
        end
      end
      for t, n in pairs(counts) do emit(task, t, n, true, keys[t], values[t]) end
    end
    return push, finish
  end

  -- Reduce side: folds the batch into the window state; emits closed windows ("final") or
  -- the windows this batch changed ("update"); evicts windows the watermark has passed.
  -- spec.merge (when the map side's fn adds a value, not a partial) merges two partials; it
  -- must not change its arguments (the first may be the state's). spec.field names the
  -- value in what is emitted ("value", or "values" for group_by_key_and_window).
  function operators.event_window_reduce(spec, nxt, fin)
    local f = shipped(spec.merge or spec.fn)
    local field = spec.field or "value"
    local filter = spec.filter and shipped(spec.filter)
    local store = store_of(spec.state, current.part)
    local len, watermark, final = spec.len, spec.watermark, spec.emit == "final"
    store.windows = store.windows or {}
    local changed = {} -- start -> key -> new value
    return function(k, sv)
      local start, v = sv[1], sv[2]
      if type(k) == "table" then k = key_of(k) end -- an array key: its representative
      local w = slot(changed, start)
      local old = w[k]
      if old == nil then
        local prev = store.windows[start]
        old = prev and prev[k]
      end
      if old == nil then w[k] = v else w[k] = f(old, v) end
    end, function()
      local windows = store.windows
      if filter then -- a key whose window value filter(k, v) refuses is not emitted
        local emit_key = nxt
        nxt = function(k, w)
          if filter(k, w[field]) then return emit_key(k, w) end
        end
      end
      local function value(start, k)
        local c = changed[start]
        local v = c and c[k]
        if v == nil then
          local w = windows[start]
          v = w and w[k]
        end
        return v
      end
      if final then
        local starts = {}
        for start in pairs(windows) do starts[start] = true end
        for start in pairs(changed) do starts[start] = true end
        for start in pairs(starts) do
          if watermark and start + len <= watermark then
            local seen = {}
            for k in pairs(windows[start] or {}) do
              seen[k] = true
              nxt(k, { start = start, ["end"] = start + len, [field] = value(start, k) })
            end
            for k in pairs(changed[start] or {}) do
              if not seen[k] then nxt(k, { start = start, ["end"] = start + len, [field] = value(start, k) }) end
            end
          end
        end
      else
        for start, w in pairs(changed) do
          for k, v in pairs(w) do nxt(k, { start = start, ["end"] = start + len, [field] = v }) end
        end
      end
      local on_success = current.on_success
      on_success[#on_success + 1] = function()
        for start, w in pairs(changed) do
          local dst = slot(windows, start)
          for k, v in pairs(w) do dst[k] = v end
        end
        drop_closed(windows, len, watermark)
      end
      fin()
    end
  end

  -- Map side of window() on event time: each record, as (start, {a, b}) (a pair keeps its two
  -- values) for each window it is in, into the window's bucket: a window's records are all in
  -- one partition, which so knows when the window changed (emit = "update"); consecutive
  -- windows go to consecutive partitions.
  function terminals.event_window_records(task, spec)
    local nparts, len, slide = spec.partitions, spec.len, spec.slide
    local keys, values, counts = buckets(nparts)
    return function(a, b)
      if a == nil then
        if b ~= nil then W.nil_key("window", b) end
        return
      end
      local ts = timestamp("window")
      local rec = { a, b }
      for start = floor(ts / slide) * slide, ts - len + 1, -slide do
        local t = (start / slide) % nparts
        local n = counts[t] + 1
        counts[t] = n
        keys[t][n], values[t][n] = start, rec
      end
    end, function()
      emit_buckets(task, nparts, true, keys, values, counts)
      keys, values = nil, nil -- a trace may keep push alive: not the task's records
    end
  end

  -- The window() starts whose records a batch emits, in order: with emit = "final", those the
  -- watermark closed, held (`held`) or added to by the batch (`added`); with "update", those
  -- the batch added to. (Cluster mode's keyed stage, dstream.worker.ops.cluster_window, too.)
  function W.raw_windows_to_emit(added, held, final, len, watermark)
    local starts, seen = {}, {}
    local function note(start)
      if not seen[start] and (not final or watermark and start + len <= watermark) then
        seen[start] = true
        starts[#starts + 1] = start
      end
    end
    for start in pairs(added) do note(start) end
    if final then for start in pairs(held) do note(start) end end
    table.sort(starts)
    return starts
  end

  -- Reduce side of window() on event time: store.raw[start] = the window's records ({a, b}
  -- each), in arrival order. Emits the records of each window the watermark closed
  -- ("final"), or of each window this batch added to ("update": all its records so far),
  -- windows in order of start; evicts closed windows.
  function operators.event_window_raw(spec, nxt, fin)
    local store = store_of(spec.state, current.part)
    local len, watermark, final = spec.len, spec.watermark, spec.emit == "final"
    store.raw = store.raw or {}
    local added = {} -- start -> records of this batch
    return function(start, rec)
      local list = slot(added, start)
      list[#list + 1] = rec
    end, function()
      local raw = store.raw
      for _, start in ipairs(W.raw_windows_to_emit(added, raw, final, len, watermark)) do
        for _, list in ipairs({ raw[start] or {}, added[start] or {} }) do
          for i = 1, #list do
            local rec = list[i]
            nxt(rec[1], rec[2])
          end
        end
      end
      local on_success = current.on_success
      on_success[#on_success + 1] = function()
        for start, list in pairs(added) do
          local dst = raw[start]
          if not dst then
            raw[start] = list
          else
            for i = 1, #list do dst[#dst + 1] = list[i] end
          end
        end
        drop_closed(raw, len, watermark)
      end
      fin()
    end
  end

  -- Map side of session windows (and of each side of an interval join, spec.who its name):
  -- (key, {ts, value}) into the key's bucket.
  function terminals.session_partition(task, spec)
    local nparts, who = spec.partitions, spec.who or "session_window"
    local keys, values, counts = buckets(nparts)
    return function(k, v)
      if v == nil then error(who .. ": the records must be key/value pairs", 0) end
      local ts = timestamp(who)
      local t = W.key_hash(k, who, v) % nparts
      local n = counts[t] + 1
      counts[t] = n
      keys[t][n], values[t][n] = k, { ts, v }
    end, function()
      emit_buckets(task, nparts, true, keys, values, counts)
    end
  end

  -- A key's sessions after a batch: its open sessions (a list of {start, last, values}, or
  -- nil) and the batch's records ({ts, value} each, or nil) merged: a record within `gap` of a
  -- session joins it, and a record that bridges two merges them. Sessions the watermark passed
  -- (last + gap <= watermark) are emitted with nxt(k, {start, end, values, count}); returns the
  -- open ones (new tables: the state changes on success), or nil when none is left. Cluster
  -- mode's keyed stage (dstream.worker.ops.cluster_window) merges the same way.
  function W.merge_sessions(k, sessions, incoming, gap, watermark, nxt)
    local events = {}
    for _, s in ipairs(sessions or {}) do
      events[#events + 1] = { s.start, s.last, s.values }
    end
    for _, tv in ipairs(incoming or {}) do
      events[#events + 1] = { tv[1], tv[1], { tv[2] } }
    end
    table.sort(events, function(a, b) return a[1] < b[1] end)
    local merged, cur = {}, nil
    for _, e in ipairs(events) do
      if cur and e[1] < cur.last + gap then
        if e[2] > cur.last then cur.last = e[2] end
        for _, v in ipairs(e[3]) do cur.values[#cur.values + 1] = v end
      else
        cur = { start = e[1], last = e[2], values = {} }
        for _, v in ipairs(e[3]) do cur.values[#cur.values + 1] = v end
        merged[#merged + 1] = cur
      end
    end
    local open = {}
    for _, sess in ipairs(merged) do
      if watermark and sess.last + gap <= watermark then
        nxt(k, { start = sess.start, ["end"] = sess.last + gap, values = sess.values,
          count = #sess.values })
      else
        open[#open + 1] = sess
      end
    end
    return #open > 0 and open or nil
  end

  -- Reduce side of session windows: per key, a sorted list of sessions {start, last, values}
  -- (W.merge_sessions). A session closes when the watermark passes last + gap.
  function operators.session_reduce(spec, nxt, fin)
    local store = store_of(spec.state, current.part)
    local gap, watermark = spec.gap, spec.watermark
    store.sessions = store.sessions or {}
    local incoming = {} -- key -> list of {ts, value}
    return function(k, tv)
      if type(k) == "table" then k = key_of(k) end -- an array key: its representative
      local list = slot(incoming, k)
      list[#list + 1] = tv
    end, function()
      local result = {} -- key -> new session list (copies: the state changes on success)
      local sessions = store.sessions
      for k, list in pairs(sessions) do
        result[k] = W.merge_sessions(k, list, incoming[k], gap, watermark, nxt)
      end
      for k, list in pairs(incoming) do
        if sessions[k] == nil then result[k] = W.merge_sessions(k, nil, list, gap, watermark, nxt) end
      end
      local on_success = current.on_success
      on_success[#on_success + 1] = function() store.sessions = result end
      fin()
    end
  end

  -- The event time of the record going down the pipeline (set by the event_time operator).
  W.event_timestamp = timestamp
end
