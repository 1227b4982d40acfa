-- dstream/cluster/windows.lua: windows across the processes of a cluster (issue 19), driver
-- side. reduce_by_key_and_window (and count_by_value_and_window, reduce_by_window and
-- count_by_window, built on it), the event-time windows of reduce_by_key_and_window and
-- group_by_key_and_window, session_window and window(), in cluster mode, come here. Each is a keyed operator of
-- dstream.cluster.keyed (the map side to APP-<name>-repartition, a keyed stage over the state
-- partitions this process owns, a changelog, restores on a move); its state per key is its
-- panes or event-time windows (dstream.worker.ops.cluster_window says how they are kept).
--
-- Semantics (the guide's Cluster mode says them to users):
-- * Processing time: a record's pane is the one of the batch that read it (batch times are
--   multiples of the batch interval since the epoch in every process, so processes agree on
--   panes, and windows are emitted at multiples of the slide since the epoch), unless it
--   reaches its state partition after a window holding that pane was emitted (it goes through
--   the repartition topic, one or more batches later): then it counts in the pane of the batch
--   it arrived in. So nothing is lost or counted twice, and every record is in len / slide
--   consecutive windows, as in one process; a record read in the last batch before a slide
--   boundary mostly shows in the next window. The window is its panes combined at each slide.
--   With an inverse function, a key stays once seen, as in one process: its state partition
--   keeps it at its neutral value (inverse(v, v) of its value when first emitted) and emits it
--   at that value while none of its records is in the window (unless the filter drops it).
--   Windows due while a state partition had no owner are not emitted then: the next owner
--   moves the panes on by that time, and the windows go on where they stopped.
-- * Event time: the record's timestamp picks its windows, as in one process; a state
--   partition's watermark is the largest timestamp it heard of (every map task tells every
--   state partition the largest it read) minus the delay; a partial for a window that was
--   emitted already is late (dropped; late_count() counts its records whose earliest window
--   it is, so each late record once, and the most any operator after the same event_time
--   found, as one process counts each record once at event_time). late = "side" is refused:
--   a partial holds no records.
-- * Sessions: a key's state is its open sessions; the watermark is the state partition's as
--   for event-time windows, and a record older than that of the batches before is late.
-- * window() on event time: a window's records are the state of its start (its key); late
--   per record, counted by the record's earliest window, as for event-time windows.
-- * late = "side" (window() and sessions): the keyed stages send their late records as a side
--   output; they make late_records() of the process owning the partition (take_late).
local keyed = require("dstream.cluster.keyed")
local protocol = require("dstream.protocol")
local rdd_mod = require("dstream.rdd")
local shared = require("dstream.state.shared")
local util = require("dstream.util")

local M = {}

local COLLECT = { kind = "collect" }

-- stream:reduce_by_key_and_window(f, len, slide, opts) in cluster mode (checked by the caller;
-- fid, filter and inverse are shipped ids; pane = gcd(len, slide)).
function M.reduce_by_key_and_window(self, fid, filter, len_ms, slide_ms, pane_ms, n, inverse)
  local ctx = self.ctx
  local out = keyed.keyed_operator(self, "reduce_by_key_and_window", n, "cluster_window_reduce",
    { fn = fid, filter = filter, inverse = inverse, len = len_ms, slide = slide_ms, pane = pane_ms },
    COLLECT,
    function(results, _, time)
      if time % slide_ms ~= 0 then return nil end -- windows at multiples of the slide
      return rdd_mod.from_outputs(ctx, results)
    end, { send = { kind = "cluster_window_send", fn = fid } })
  out.slide_ms = slide_ms
  return out
end

-- The late records a batch's keyed stages kept (side outputs TARGET_LATE) added to this
-- process's late_records() of that batch (ev.late_rdds, read by dstream.window).
local function take_late(ctx, ev, results, time)
  local slices = ev.late_slices or {}
  ev.late_slices = slices
  local list = slices[time]
  for _, outputs in ipairs(results) do
    for _, out in ipairs(outputs) do
      if out[1] == protocol.TARGET_LATE then
        list = list or {}
        list[#list + 1] = out[2]
      end
    end
  end
  if not list then return end
  slices[time] = list
  ev.late_rdds[time] = rdd_mod.from_slices(ctx, { list })
  for t in pairs(slices) do -- (a few batches kept, as one process keeps them)
    if t < time - 100 * ctx.batch_ms then slices[t], ev.late_rdds[t] = nil, nil end
  end
end

-- late_count() of event_time stream `ev` after a keyed stage of this process found `found`
-- late records since it started (an accumulator's value). One process counts a late record
-- once, at event_time, whatever operators follow; here each operator's keyed stages find their
-- own (in batches of their own), so it is what this process's checkpoint had plus the most
-- any operator after this event_time found since the process started. (The interval join,
-- dstream.interval_join, too.)
function M.note_late(ev, found)
  local seen = ev.cluster_late
  if not seen then
    seen = { before = ev.late_total, most = 0 } -- (late_total: restored by now)
    ev.cluster_late = seen
  end
  if found > seen.most then
    seen.most = found
    ev.late_total = seen.before + seen.most
  end
end

-- An event-time keyed operator `who` of kind `kind` (fields: the keyed stage's, send: the map
-- side's terminal): the late records or partials its keyed stages drop go to late_count() of
-- this process, and with late = "side" (records: the keyed stage has the records, not partials
-- folded on the map side) to its late_records().
local function event_operator(self, who, n, kind, fields, send, records)
  local ctx, ev = self.ctx, self.event
  if ev.keep_late and not records then
    util.raise(who .. ": late = \"side\" (late_records()) is not supported by event-time windows"
      .. " that fold their values in cluster mode: a record is found late by its key's state"
      .. " partition, where only the values folded per window and key arrive, not the records;"
      .. " use late = \"drop\" and late_count(), or window() or session_window(), whose late"
      .. " records go to late_records()")
  end
  local late = shared.accumulator(ctx, 0)
  fields.delay, fields.late_acc, fields.keep_late = ev.delay, late.id, ev.keep_late or nil
  return keyed.keyed_operator(self, who, n, kind, fields, COLLECT, function(results, _, time)
    if ev.keep_late then take_late(ctx, ev, results, time) end
    M.note_late(ev, late.value)
    return rdd_mod.from_outputs(ctx, results)
  end, { send = send })
end

-- An event-time window in cluster mode (window.lua's event_window: fid folds values, group's
-- create and merge for group_by_key_and_window, filter a shipped id).
function M.event_window(self, fid, len_ms, slide_ms, n, who, group, filter)
  return event_operator(self, who, n, "cluster_event_window",
    { fn = fid, merge = group and group.merge, field = group and "values", filter = filter,
      len = len_ms, emit = self.event.emit },
    { kind = "cluster_event_send", fn = fid, create = group and group.create, len = len_ms,
      slide = slide_ms })
end

-- session_window(gap) in cluster mode: a key's open sessions are its state (late records are
-- dropped by the keyed stage and counted, as one process drops them at event_time).
function M.session_window(self, gap_ms, n)
  return event_operator(self, "session_window", n, "cluster_session", { gap = gap_ms },
    { kind = "cluster_session_send" }, true)
end

-- window() after event_time in cluster mode: a window's records are the state of its start
-- (n: the context's partitions, as in one process).
function M.event_records_window(self, len_ms, slide_ms, n)
  return event_operator(self, "window", n, "cluster_event_raw",
    { len = len_ms, emit = self.event.emit },
    { kind = "cluster_event_records_send", len = len_ms, slide = slide_ms }, true)
end

return M
