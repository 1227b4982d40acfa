-- dstream/worker/ops/window.lua: the worker side of reducing windows: panes of keyed partial values.
--
-- Each batch's records (already combined per key on the map side) are folded into the pane of
-- the slice of time the batch belongs to: panes are `pane` ms long (the gcd of the window
-- length and slide), so a window is a whole number of panes. At a slide boundary the window's
-- value is either the combination of its panes, or, with an inverse function, the previous
-- window's value plus the panes that entered minus the panes that left. Memory is one table
-- per pane and one running table: it grows with panes and keys, not with records. Changes
-- become the state only when the task succeeds. Registered into dstream.worker.
--
-- A window's value stays where it was computed: the task keeps it (by batch time) and the
-- window stream's batch reads it there (a state source with a time, W.kept_result), rather
-- than every key of every window being encoded into C memory and decoded again by whatever
-- reads the batch. Kept values are dropped once the driver no longer remembers their batch
-- (spec.keep_from), and are not part of checkpoints.
return function(W)
  local operators = W.operators
  local shipped, current, emit = W.shipped, W.current, W.emit
  local store_of = require("dstream.worker.store").store_of
  local key_of, records_error = require("dstream.worker.task").key_of, require("dstream.worker.task").records_error
  local pairs, ceil, type = pairs, math.ceil, type
  local table_new = require("table.new")
  -- A partition's store -> batch time -> the window's value (key -> value). Weak: a store
  -- replaced by a checkpoint's takes its kept values with it.
  local kept = setmetatable({}, { __mode = "k" })

  function W.kept_result(id, part, time)
    local by_time = kept[store_of(id, part)]
    local t = by_time and by_time[time]
    if not t then -- (another attempt would not find it either: the task is not retried)
      records_error(string.format("the window of batch %d ms is no longer kept on the workers: a window's "
        .. "batch can be read while the job remembers it (during its batch, or as long as a "
        .. "window over it needs it); collect() it to keep it longer", time))
    end
    return t
  end

  -- Combines src's values into dst in place with f.
  local function fold(dst, src, f)
    for k, v in pairs(src) do
      local old = dst[k]
      if old == nil then dst[k] = v else dst[k] = f(old, v) end
    end
    return dst
  end

  -- With an undo log, the same in place on the running window. The log is an array of
  -- (key, value before) pairs (ABSENT: none), appended at every change; a failed attempt is
  -- rolled back from the last pair to the first, so a key changed twice gets its first value
  -- back. (A table by key, logging each key's first change only, cost a lookup and an insert
  -- per change, and a hash part of twice the batch's keys cleared at every slide.)
  local ABSENT = {}
  -- A partition's log, beside its store and not in it: a checkpoint encodes the store whole.
  local undo_logs = setmetatable({}, { __mode = "k" })
  local function log_change(undo, k, old)
    local n = undo.n + 2
    undo[n - 1] = k
    undo[n] = old == nil and ABSENT or old
    undo.n = n
  end
  local function fold_logged(dst, src, f, undo)
    for k, v in pairs(src) do
      local old = dst[k]
      log_change(undo, k, old)
      if old == nil then dst[k] = v else dst[k] = f(old, v) end
    end
  end
  local function rollback(dst, undo)
    for i = undo.n - 1, 1, -2 do
      local k, v = undo[i], undo[i + 1]
      if v == ABSENT then dst[k] = nil else dst[k] = v end
    end
  end

  -- A new table: dst's entries combined with src's (dst itself is not changed).
  local function merged(dst, src, f)
    local out = {}
    for k, v in pairs(dst) do out[k] = v end
    return fold(out, src, f)
  end

  -- The window stage's terminal: the number of keys of the window the task kept (set by
  -- window_reduce's finish, current.kept_keys), for the driver to answer count() of the
  -- window's batch without a stage of its own (a stage per slide: see dstream.window).
  function W.terminals.kept_count(task)
    current.kept_keys = nil
    return function() end, function()
      if current.kept_keys then emit(task, 0, 1, false, { current.kept_keys }) end
      current.kept_keys = nil
    end
  end

  function operators.window_reduce(spec, _, fin)
    local f = shipped(spec.fn)
    local inverse = spec.inverse and shipped(spec.inverse)
    local filter = spec.filter and shipped(spec.filter)
    local store = store_of(spec.state, current.part)
    local time, len, pane, zero = current.time, spec.len, spec.pane, spec.zero
    store.panes = store.panes or {}
    store.last_emit = store.last_emit or zero
    -- Sized as the last batch's (a batch's keys are about the same from one batch to the next):
    -- no rehash at every doubling while it fills.
    -- Or the map side's table, when it was kept in this VM (dstream.worker.handoff): the
    -- batch's keys are not decoded and inserted again.
    local batch, batch_n = current.handoff, current.handoff_keys
    if batch then
      current.handoff, current.handoff_keys = nil, nil
    else
      batch, batch_n = table_new(0, store.batch_n or 0), 0
    end
    return function(k, v)
      local old = batch[k]
      if old == nil and type(k) == "table" then -- an array key: its representative
        k = key_of(k)
        old = batch[k]
      end
      if old == nil then
        batch[k] = v
        batch_n = batch_n + 1
      else
        batch[k] = f(old, v)
      end
    end, function()
      local panes = store.panes
      local pane_end = zero + ceil((time - zero) / pane) * pane
      -- A pane that is one batch (pane = batch interval, as every window sliding by one batch)
      -- is this task's own table: no copy. An existing pane is not changed in place (a failed
      -- attempt must leave it as it was).
      local old_pane = panes[pane_end]
      local new_pane = old_pane and merged(old_pane, batch, f) or batch
      local running, running_n, undo
      if spec.emit then
        if inverse then
          -- running(T) = running(last) + panes in (last, T] - panes in (last - len, T - len]
          local last = store.last_emit
          -- In place when no batch the driver may still read holds the previous window (it is
          -- kept for reading, W.kept_result), with an undo log for a failed attempt; else a copy.
          local log = undo_logs[store]
          if log and log.n > 0 then -- an attempt that failed changed it in place
            rollback(store.running, log)
            log.n = 0
          end
          local add = fold
          if store.running and spec.keep_from > last then
            -- The same log at every slide (emptied by its count: no table to allocate and
            -- clear per slide; what it still refers to past its count is overwritten later).
            undo = log or table_new(2 * batch_n, 1)
            undo.n = 0
            undo_logs[store] = undo
            running, add = store.running, fold_logged
          else
            running = table_new(0, store.running_n or 0) -- sized: no rehash while copying
            for k, v in pairs(store.running or {}) do running[k] = v end
          end
          for e, p in pairs(panes) do
            if e > last and e <= time and e ~= pane_end then add(running, p, f, undo) end
          end
          add(running, new_pane, f, undo)
          for e, p in pairs(panes) do
            if e > last - len and e <= time - len then
              for k, v in pairs(p) do
                local old = running[k]
                if old ~= nil then
                  if undo then log_change(undo, k, old) end
                  running[k] = inverse(old, v)
                end
              end
            end
          end
        else
          running = {}
          for e, p in pairs(panes) do
            if e > time - len and e <= time and e ~= pane_end then fold(running, p, f) end
          end
          fold(running, new_pane, f)
        end
        local n = 0
        for k, v in pairs(running) do
          if filter and not filter(k, v) then
            if undo then log_change(undo, k, v) end
            running[k] = nil
          else
            n = n + 1
          end
        end
        running_n = n
        current.kept_keys = n
      end
      local on_success = current.on_success
      on_success[#on_success + 1] = function()
        panes[pane_end] = new_pane
        store.batch_n = batch_n
        if spec.emit then
          if inverse then store.running, store.running_n = running, running_n end
          if undo then undo.n = 0 end -- done: nothing to roll back
          store.last_emit = time
          -- Panes at or before time - len have left every future window (and, with an
          -- inverse, have been subtracted); without one, the next window starts later still.
          local keep_after = inverse and time - len or time + spec.slide - len
          for e in pairs(panes) do
            if e <= keep_after then panes[e] = nil end
          end
          -- The window's value, read where it is (W.kept_result).
          local by_time = kept[store] or {}
          kept[store] = by_time
          by_time[time] = running
          for t in pairs(by_time) do
            if t < spec.keep_from then by_time[t] = nil end
          end
        end
      end
      fin()
    end
  end
end
