-- dstream/ops_window.lua: the worker side of reducing windows: panes of keyed partial values.
--
-- Each batch's records (already combined per key on the map side) are folded into the pane of
-- the slice of time the batch belongs to: panes are `pane` ms long (the gcd of the window
-- length and slide), so a window is a whole number of panes. At a slide boundary the window's
-- value is either the combination of its panes, or, with an inverse function, the previous
-- window's value plus the panes that entered minus the panes that left. Memory is one table
-- per pane and one running table: it grows with panes and keys, not with records. Changes
-- become the state only when the task succeeds. Registered into dstream.worker.
return function(W)
  local operators = W.operators
  local shipped, current, store_of = W.shipped, W.current, W.store_of
  local pairs, ceil = pairs, math.ceil
  local table_new = require("table.new")

  -- Combines src's values into dst in place with f.
  local function fold(dst, src, f)
    for k, v in pairs(src) do
      local old = dst[k]
      if old == nil then dst[k] = v else dst[k] = f(old, v) end
    end
    return dst
  end

  -- A new table: dst's entries combined with src's (dst itself is not changed).
  local function merged(dst, src, f)
    local out = {}
    for k, v in pairs(dst) do out[k] = v end
    return fold(out, src, f)
  end

  function operators.window_reduce(spec, nxt, fin)
    local f = shipped(spec.fn)
    local inverse = spec.inverse and shipped(spec.inverse)
    local filter = spec.filter and shipped(spec.filter)
    local store = store_of(spec.state, current.part)
    local time, len, pane, zero = current.time, spec.len, spec.pane, spec.zero
    store.panes = store.panes or {}
    store.last_emit = store.last_emit or zero
    local batch = {}
    return function(k, v)
      local old = batch[k]
      if old == nil then batch[k] = v else batch[k] = f(old, v) end
    end, function()
      local panes = store.panes
      local pane_end = zero + ceil((time - zero) / pane) * pane
      local new_pane = merged(panes[pane_end] or {}, batch, f)
      local running, running_n
      if spec.emit then
        if inverse then
          -- running(T) = running(last) + panes in (last, T] - panes in (last - len, T - len]
          running = table_new(0, store.running_n or 0) -- sized: no rehash while copying
          for k, v in pairs(store.running or {}) do running[k] = v end
          local last = store.last_emit
          for e, p in pairs(panes) do
            if e > last and e <= time and e ~= pane_end then fold(running, p, f) end
          end
          fold(running, new_pane, f)
          for e, p in pairs(panes) do
            if e > last - len and e <= time - len then
              for k, v in pairs(p) do
                local old = running[k]
                if old ~= nil then running[k] = inverse(old, v) end
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
        local kept = 0
        for k, v in pairs(running) do
          if filter and not filter(k, v) then
            running[k] = nil
          else
            kept = kept + 1
            nxt(k, v)
          end
        end
        running_n = kept
      end
      local on_success = current.on_success
      on_success[#on_success + 1] = function()
        panes[pane_end] = new_pane
        if spec.emit then
          if inverse then store.running, store.running_n = running, running_n end
          store.last_emit = time
          -- Panes at or before time - len have left every future window (and, with an
          -- inverse, have been subtracted); without one, the next window starts later still.
          local keep_after = inverse and time - len or time + spec.slide - len
          for e in pairs(panes) do
            if e <= keep_after then panes[e] = nil end
          end
        end
      end
      fin()
    end
  end
end
