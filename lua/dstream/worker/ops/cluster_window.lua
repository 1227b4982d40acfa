-- dstream/worker/ops/cluster_window.lua: windows across the processes of a cluster (issue 19),
-- worker side; dstream.cluster.windows plans them on dstream.cluster.keyed's keyed operator, and
-- the keyed stages bring their state up to date and write their changelog with
-- dstream.worker.ops.cluster's helpers (W.cluster). A state partition's state is its panes
-- (store.panes[pane end][key]) or event-time windows (store.windows[start][key]); the changelog
-- holds each changed (pane or window, key) with its new value under a key of two string.buffer
-- values (the pane's end or the window's start, then the key), and a tombstone when the pane or
-- window is gone, so a restore rebuilds exactly what the owner keeps.
--
-- * reduce_by_key_and_window: the map side (cluster_window_send) folds the task's pairs per key
--   and sends (key, value, its batch time); the keyed stage (cluster_window_reduce) folds each
--   into the pane of that time, unless a window holding that pane was emitted already (the
--   record arrived after it: then into the pane of the keyed stage's own batch), and at a
--   slide boundary (a multiple of the slide since the epoch: batch times are aligned to the
--   wall clock, so every process agrees) emits the window: its panes combined.
-- * event-time windows: the map side (cluster_event_send) folds per (window start, key) as one
--   process does and sends (key, {start, value}), and to every state partition the largest
--   timestamp the task read (key nil); the keyed stage (cluster_event_window) keeps the largest
--   it heard of (its marker's meta, so a restore has it): the watermark is that minus the
--   delay; a partial of a window already emitted (its end at or before the watermark of the
--   batches before) is late and dropped; windows the new watermark passed are emitted and
--   removed. late_count() counts records: each partial carries how many of its records have
--   their earliest window there (the first of theirs to close), and a late one counts those.
-- * session_window: the map side (cluster_session_send) sends each record as (key, {ts, value})
--   and the largest timestamp as above; the keyed stage (cluster_session) keeps each key's open
--   sessions in store.states, so its changelog is update_state_by_key's (the key, its sessions).
-- * window() on event time: the map side (cluster_event_records_send) sends a task's records of
--   each window as one entry keyed by the window's start; the keyed stage (cluster_event_raw)
--   keeps them as chunks per start (store.raw[start][i], changelog key (start, i)).
-- * late = "side": session_window's and window()'s keyed stages have the records, and send
--   their late ones as the task's side output TARGET_LATE (dstream.cluster.windows makes them
--   late_records() of this process), as one process's event_time stage does.
-- * reduce_by_key_and_window with an inverse function: a key once emitted stays (as one
--   process's running window keeps it): store.neutral[key] = inverse(v, v) of its first
--   emitted value, emitted while the window holds none of its records; in the changelog
--   under (NEUTRAL, key).
-- Registered into dstream.worker (see its list of operator modules).
local buffer = require("string.buffer")
local protocol = require("dstream.protocol")

return function(W)
  local operators, terminals, current, shipped = W.operators, W.terminals, W.current, W.shipped
  local task = require("dstream.worker.task")
  local key_of, slot = task.key_of, task.slot
  local pairs, type, ceil, floor, next, error = pairs, type, math.ceil, math.floor, next, error

  local dec = buffer.new()
  -- The changelog's "time" of reduce_by_key_and_window's keys kept at their neutral value
  -- (store.neutral, beside the panes: pane ends are numbers).
  local NEUTRAL = "neutral"

  -- Folds v into key k of slot t with f: into changed[t] (what the task changes), starting from
  -- the state's slots[t][k] (left as it is: a failed attempt changes nothing).
  local function fold(changed, slots, t, k, v, f)
    if type(k) == "table" then k = key_of(k) end -- an array key: its representative
    local w = slot(changed, t)
    local old = w[k]
    if old == nil then
      local s = slots[t]
      old = s and s[k]
    end
    if old == nil then w[k] = v else w[k] = f(old, v) end
  end

  -- A keyed stage's changelog writes: the changed entries (time -> key -> value) of slots
  -- that stay, and a tombstone for every entry of a slot that is gone (time -> true).
  local function put_changes(put, slots, changed, gone)
    for t, w in pairs(changed) do
      if not gone[t] then
        for k, v in pairs(w) do put(k, v, t) end
      end
    end
    for t in pairs(gone) do
      for k in pairs(slots[t] or {}) do put(k, nil, t) end
    end
  end

  -- The same in memory, once the task succeeded.
  local function apply_changes(slots, changed, gone)
    for t, w in pairs(changed) do
      if not gone[t] then
        local dst = slot(slots, t)
        for k, v in pairs(w) do dst[k] = v end
      end
    end
    for t in pairs(gone) do slots[t] = nil end
  end

  -- A restore's apply for the store's field `field` (time -> key -> value): one changelog entry.
  local function applier(field)
    return function(store, kbytes, s)
      dec:set(kbytes)
      local t, k = dec:decode(), dec:decode()
      if type(k) == "table" then k = key_of(k) end
      local slots = store[field] or {}
      store[field] = slots
      if t == NEUTRAL then slots = store end -- (store.neutral[k])
      if s == false then
        local w = slots[t]
        if w then
          w[k] = nil
          if next(w) == nil then slots[t] = nil end
        end
      else
        slot(slots, t)[k] = s
      end
    end
  end
  local apply_panes, apply_windows = applier("panes"), applier("windows")
  local apply_raw = applier("raw") -- (window(): start -> chunk number -> records)


  -- Map side of reduce_by_key_and_window: the task's pairs folded per key, each sent with the
  -- batch's time.
  function terminals.cluster_window_send(t, spec)
    local send, done = W.cluster.sender(t, spec)
    local f, who = shipped(spec.fn), spec.who
    local acc = {}
    return function(k, v)
      local old = acc[k]
      if old == nil then
        if v == nil then error(who .. ": the records must be key/value pairs", 0) end
        local tk = type(k)
        if tk ~= "string" and tk ~= "number" or k ~= k then -- an array key, or no key (an error)
          k = key_of(k, who, v)
          old = acc[k]
        end
      end
      if old == nil then acc[k] = v else acc[k] = f(old, v) end
    end, function()
      local time = current.time
      for k, v in pairs(acc) do send(k, v, time) end
      done()
    end
  end

  -- The keyed stage of reduce_by_key_and_window (see the header).
  function operators.cluster_window_reduce(spec, nxt, fin)
    local C = W.cluster
    local f = shipped(spec.fn)
    local filter = spec.filter and shipped(spec.filter)
    local part, time = current.part, current.time
    local store, r, skip, cl_base = C.prepare(spec, part, apply_panes)
    local panes = store.panes or {}
    store.panes = panes
    local pane, len, slide = spec.pane, spec.len, spec.slide
    local here = ceil(time / pane) * pane           -- the pane of this batch
    local closed = floor((time - 1) / slide) * slide -- panes up to here were in an emitted window
    local changed = {} -- pane end -> key -> new value
    local gone = {} -- pane ends that leave every later window
    local inverse = spec.inverse and shipped(spec.inverse)
    local neutral = store[NEUTRAL] or {} -- key -> its neutral value (with an inverse)
    local nchanged = {} -- key -> its new neutral value, or false: no longer kept
    -- With an inverse, as one process's running window: a key emitted once is kept at its
    -- neutral value (inverse(v, v), taken when first emitted), and emitted at it while none of
    -- its records is in the window, unless the filter drops it (then it is not kept: it comes
    -- back with its next record, as a key the filter removed from one process's window).
    local function keep_neutral(window)
      for k, v in pairs(window) do
        if neutral[k] == nil then
          local z = inverse(v, v)
          if not filter or filter(k, z) then nchanged[k] = z end
        end
      end
      for k, z in pairs(neutral) do
        if window[k] == nil then
          if not filter or filter(k, z) then nxt(k, z) else nchanged[k] = false end
        end
      end
    end
    -- Windows that came while the partition had no owner (a process died, or the group was
    -- moving it; store.meta is the last window emitted): nobody emitted them, so the panes
    -- move on by that time and the windows go on where they stopped (each record still in
    -- len / slide windows). The moved panes are the state (base), written again whole.
    local emitted = store.meta -- (as if its windows were emitted meanwhile)
    local base, missed = panes, emitted and ceil(time / slide) * slide - (emitted + slide) or 0
    if missed > 0 then
      emitted = emitted + missed
      base = {}
      for e, p in pairs(panes) do
        local dst = slot(base, e + missed)
        for k, v in pairs(p) do dst[k] = v end
      end
    end
    return C.decoder(spec, skip, function(k, v, t)
      local e = ceil(t / pane) * pane
      if e <= closed then e = here end -- arrived after its window: counted where it arrived
      fold(changed, base, e, k, v, f)
    end, true), function()
      local emit = time % slide == 0
      if emit then
        local window = {}
        local function add(k, v)
          local old = window[k]
          if old == nil then window[k] = v else window[k] = f(old, v) end
        end
        local ends = {}
        for e in pairs(base) do ends[e] = true end
        for e in pairs(changed) do ends[e] = true end
        for e in pairs(ends) do
          if e > time - len and e <= time then
            local c = changed[e]
            for k, v in pairs(base[e] or {}) do
              if not (c and c[k] ~= nil) then add(k, v) end
            end
            for k, v in pairs(c or {}) do add(k, v) end
          end
          if e <= time + slide - len then gone[e] = true end
        end
        for k, v in pairs(window) do
          if not filter or filter(k, v) then nxt(k, v) end
        end
        if inverse then keep_neutral(window) end
      end
      C.write_changes(spec, part, store, r, cl_base, function(put)
        if base ~= panes then -- moved: every old entry removed, every new one written
          for e, p in pairs(panes) do
            for k in pairs(p) do put(k, nil, e) end
          end
          for e, p in pairs(base) do
            if not gone[e] then
              local c = changed[e]
              for k, v in pairs(p) do
                if not (c and c[k] ~= nil) then put(k, v, e) end
              end
            end
          end
        end
        put_changes(put, base, changed, gone)
        for k, z in pairs(nchanged) do put(k, z or nil, NEUTRAL) end
      end, emit and time or emitted)
      local on_success = current.on_success
      on_success[#on_success + 1] = function()
        apply_changes(base, changed, gone)
        if next(nchanged) then
          local kept = slot(store, NEUTRAL)
          for k, z in pairs(nchanged) do kept[k] = z or nil end
        end
        store.panes = base
        store.meta = emit and time or emitted
      end
      fin()
    end
  end

  -- The end of an event-time map side: the task's largest timestamp to every state partition
  -- (key nil), from which each keyed stage moves its watermark.
  local function send_top(send, spec)
    local report = current.report
    local top = report and report.max_ts
    if top then
      for p = 0, spec.partitions - 1 do send(nil, top, nil, p) end
    end
    current.report = nil -- (the watermark is the keyed stage's, not this process's driver's)
  end

  -- Late records a keyed stage keeps for late_records() (event_time{ late = "side" }): sent
  -- with the task's output to this process's driver, as event_time's own (TARGET_LATE).
  local function late_keeper(spec)
    return spec.keep_late and { keys = {}, values = {}, n = 0, pairs = false } or nil
  end
  local function keep_late(kept, a, b)
    local n = kept.n + 1
    kept.keys[n], kept.values[n], kept.n = a, b, n
    if b ~= nil then kept.pairs = true end
  end
  local function emit_late(kept)
    if kept and kept.n > 0 then
      W.emit(current.task, protocol.TARGET_LATE, kept.n, kept.pairs, kept.keys, kept.values)
    end
  end

  -- Late partials or records dropped by a keyed stage, to late_count() of its process.
  local function count_late(spec, late)
    if late > 0 then
      local accums = current.accums or {}
      current.accums = accums
      accums[spec.late_acc] = (accums[spec.late_acc] or 0) + late
    end
  end

  -- Map side of an event-time window: folded per (window start, key) as in one process
  -- (W.event_window_acc), sent as (key, {start, value}); then the task's largest timestamp to
  -- every state partition (key nil), from which each keyed stage moves its watermark.
  function terminals.cluster_event_send(t, spec)
    local send, done = W.cluster.sender(t, spec)
    local firsts = {} -- start -> key -> records whose earliest window it is (for late counts)
    local push, acc = W.event_window_acc(spec, firsts)
    return push, function()
      for start, w in pairs(acc) do
        local c = firsts[start]
        for k, v in pairs(w) do send(k, { start, v, c and c[k] }) end
      end
      send_top(send, spec)
      done()
    end
  end

  -- Map side of session_window: each record as (key, {ts, value}), then the task's largest
  -- timestamp to every state partition, as for event-time windows.
  function terminals.cluster_session_send(t, spec)
    local send, done = W.cluster.sender(t, spec)
    local timestamp = W.event_timestamp
    return function(k, v)
      if v == nil then error("session_window: the records must be key/value pairs", 0) end
      send(k, { timestamp("session_window"), v })
    end, function()
      send_top(send, spec)
      done()
    end
  end

  -- The keyed stage of an event-time window (see the header). spec.merge (when the map side's
  -- fn adds a value, not a partial) merges two partials without changing them; spec.field
  -- names the value in what is emitted ("value", or "values" for group_by_key_and_window).
  function operators.cluster_event_window(spec, nxt, fin)
    local C = W.cluster
    local f = shipped(spec.merge or spec.fn)
    local field = spec.field or "value"
    local filter = spec.filter and shipped(spec.filter)
    local part = current.part
    local store, r, skip, base = C.prepare(spec, part, apply_windows)
    local windows = store.windows or {}
    store.windows = windows
    local len, delay, final = spec.len, spec.delay, spec.emit == "final"
    local top = store.meta -- the largest timestamp this state partition heard of
    local before = top and top - delay -- the watermark of the batches before
    local changed, late = {}, 0 -- start -> key -> new value
    return C.decoder(spec, skip, function(k, sv)
      if k == nil then -- a map task's largest timestamp
        if top == nil or sv > top then top = sv end
        return
      end
      local start, v = sv[1], sv[2]
      if before and start + len <= before then -- its window was emitted already
        late = late + (sv[3] or 0) -- (its records whose earliest window it is: once each)
        return
      end
      fold(changed, windows, start, k, v, f)
    end), function()
      local watermark = top and top - delay
      local function value(start, k)
        local c = changed[start]
        local v = c and c[k]
        if v == nil then v = windows[start][k] end
        return v
      end
      local function out(start, k, v)
        if not filter or filter(k, v) then
          nxt(k, { start = start, ["end"] = start + len, [field] = v })
        end
      end
      local starts = {}
      for start in pairs(windows) do starts[start] = true end
      for start in pairs(changed) do starts[start] = true end
      local gone = {} -- windows the watermark passed: emitted (final) and removed
      for start in pairs(starts) do
        if watermark and start + len <= watermark then gone[start] = true end
      end
      if final then
        for start in pairs(gone) do
          local seen = {}
          for k in pairs(windows[start] or {}) do
            seen[k] = true
            out(start, k, value(start, k))
          end
          for k, v in pairs(changed[start] or {}) do
            if not seen[k] then out(start, k, v) end
          end
        end
      else
        for start, w in pairs(changed) do
          for k, v in pairs(w) do out(start, k, v) end
        end
      end
      C.write_changes(spec, part, store, r, base, function(put) put_changes(put, windows, changed, gone) end, top)
      count_late(spec, late)
      local on_success = current.on_success
      on_success[#on_success + 1] = function()
        apply_changes(windows, changed, gone)
        store.meta = top
      end
      fin()
    end
  end

  -- The keyed stage of session_window: a key's state is its open sessions (a list of
  -- {start, last, values}, W.merge_sessions), in the changelog under the key (a key with none
  -- left gets a tombstone), so a restore is update_state_by_key's. The watermark is the
  -- largest timestamp this partition heard of (store.meta) minus the delay; a record older
  -- than the watermark of the batches before is late, dropped and counted, as one process
  -- drops it at event_time.
  function operators.cluster_session(spec, nxt, fin)
    local C = W.cluster
    local part = current.part
    local store, r, skip, base = C.prepare(spec, part)
    local sessions, gap, delay = store.states, spec.gap, spec.delay
    local top = store.meta
    local before = top and top - delay
    local incoming, late = {}, 0 -- key -> list of {ts, value}
    local kept = late_keeper(spec)
    return C.decoder(spec, skip, function(k, tv)
      if k == nil then -- a map task's largest timestamp
        if top == nil or tv > top then top = tv end
        return
      end
      if before and tv[1] < before then
        late = late + 1
        if kept then keep_late(kept, k, tv[2]) end
        return
      end
      if type(k) == "table" then k = key_of(k) end
      local list = slot(incoming, k)
      list[#list + 1] = tv
    end), function()
      local watermark = top and top - delay
      local merge = W.merge_sessions
      local result, keys = {}, 0
      for k, list in pairs(sessions) do
        result[k] = merge(k, list, incoming[k], gap, watermark, nxt)
      end
      for k, list in pairs(incoming) do
        if sessions[k] == nil then result[k] = merge(k, nil, list, gap, watermark, nxt) end
      end
      for _ in pairs(result) do keys = keys + 1 end
      W.report_keys(spec, keys)
      C.write_changes(spec, part, store, r, base, function(put)
        for k, old in pairs(sessions) do -- (without records, a key changes only by closing)
          local new = result[k]
          if new == nil then put(k, nil)
          elseif incoming[k] or #new ~= #old then put(k, new) end
        end
        for k in pairs(incoming) do
          if sessions[k] == nil and result[k] then put(k, result[k]) end
        end
      end, top)
      count_late(spec, late)
      emit_late(kept)
      local on_success = current.on_success
      on_success[#on_success + 1] = function()
        store.states = result
        store.meta = top
      end
      fin()
    end
  end

  -- Map side of window() on event time: the task's records grouped per window (start) they
  -- are in, each window's as one entry (start, { {a, b}, ... }) to the state partition of
  -- the start; then the largest timestamp to every state partition.
  function terminals.cluster_event_records_send(t, spec)
    local send, done = W.cluster.sender(t, spec)
    local timestamp = W.event_timestamp
    local len, slide = spec.len, spec.slide
    local by_start = {}
    return function(a, b)
      if a == nil then
        if b ~= nil then W.nil_key("window", b) end
        return
      end
      local ts = timestamp("window")
      local rec = { a, b }
      local last, first = floor(ts / slide) * slide, floor((ts - len) / slide) * slide + slide
      for start = last, first, -slide do
        local list = slot(by_start, start)
        list[#list + 1] = rec
      end
      if first <= last then -- (the earliest window counts the record if it comes late)
        local list = by_start[first]
        local firsts = slot(list, "firsts")
        firsts[#firsts + 1] = #list -- (its place in the list)
      end
    end, function()
      for start, list in pairs(by_start) do send(start, list) end
      send_top(send, spec)
      done()
    end
  end

  -- The keyed stage of window() on event time: store.raw[start] = the window's records as
  -- chunks, one per batch that added to it (chunk i under changelog key (start, i)), so a
  -- batch writes only what it added, and a window the watermark passed gets a tombstone per
  -- chunk. Emits as one process does (emit = "final": the records of each window the watermark
  -- closed; "update": all records so far of each window this batch added to), windows in order
  -- of start. A window's records arriving after it was emitted (its end at or before the
  -- watermark of the batches before) are late: dropped, and counted by the window that is the
  -- earliest of theirs (list.firsts: their places in the list), so a record counts once (and
  -- goes to late_records() once, with late = "side").
  function operators.cluster_event_raw(spec, nxt, fin)
    local C = W.cluster
    local part = current.part
    local store, r, skip, base = C.prepare(spec, part, apply_raw)
    local raw = slot(store, "raw")
    local len, delay, final = spec.len, spec.delay, spec.emit == "final"
    local top = store.meta
    local before = top and top - delay
    local added, late = {}, 0 -- start -> this batch's records
    local kept = late_keeper(spec)
    return C.decoder(spec, skip, function(start, list)
      if start == nil then -- a map task's largest timestamp
        if top == nil or list > top then top = list end
        return
      end
      if before and start + len <= before then
        local firsts = list.firsts -- (records whose earliest window it is: once each)
        if firsts then
          late = late + #firsts
          if kept then
            for i = 1, #firsts do
              local rec = list[firsts[i]]
              keep_late(kept, rec[1], rec[2])
            end
          end
        end
        return
      end
      local dst = slot(added, start)
      for i = 1, #list do dst[#dst + 1] = list[i] end
    end), function()
      local watermark = top and top - delay
      local function closed(start) return watermark and start + len <= watermark end
      for _, start in ipairs(W.raw_windows_to_emit(added, raw, final, len, watermark)) do
        for _, chunk in ipairs(raw[start] or {}) do
          for i = 1, #chunk do nxt(chunk[i][1], chunk[i][2]) end
        end
        local list = added[start] or {}
        for i = 1, #list do nxt(list[i][1], list[i][2]) end
      end
      local gone = {}
      for start in pairs(raw) do if closed(start) then gone[start] = true end end
      for start in pairs(added) do if closed(start) then gone[start] = true end end
      C.write_changes(spec, part, store, r, base, function(put)
        for start in pairs(gone) do
          for i in ipairs(raw[start] or {}) do put(i, nil, start) end
        end
        for start, list in pairs(added) do
          if not gone[start] then put(#(raw[start] or {}) + 1, list, start) end
        end
      end, top)
      count_late(spec, late)
      emit_late(kept)
      local on_success = current.on_success
      on_success[#on_success + 1] = function()
        for start, list in pairs(added) do
          if not gone[start] then
            local chunks = slot(raw, start)
            chunks[#chunks + 1] = list
          end
        end
        for start in pairs(gone) do raw[start] = nil end
        store.meta = top
      end
      fin()
    end
  end
end
