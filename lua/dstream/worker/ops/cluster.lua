-- dstream/worker/ops/cluster.lua: cluster mode's keyed state on the workers (issue 19).
--
-- Two halves of a stateful operator run by several processes (dstream.cluster.keyed plans them):
--
-- * terminal repartition_send (the map side): every (key, value) pair goes to partition
--   key_hash(key) % n of the operator's repartition topic, as an entry (the key and the value
--   in string.buffer's format) of the task's bundle for that partition: one message per
--   partition the task wrote to, more when a bundle passes its size limit
--   (dstream.worker.bundles). The task succeeds once every message is delivered.
-- * operator cluster_update_state (the keyed stage): reads one partition p of the repartition
--   topic, which is state partition p. Before its records, the task brings the partition's
--   state up to date with the changelog (partition p of APP-<operator>-changelog) from the
--   offset its local copy covers (store.cl_end; 0 for a store never filled) to the high
--   watermark: the first batch holding a partition restores it, a partition that comes back
--   reads only what its other owners wrote meanwhile, and a restart from a checkpoint reads
--   what came after the checkpoint. Then update_state_by_key runs as in one process, and the
--   keys whose state changed are written to the changelog (a removed key as a null value),
--   then a marker (key "\0", which no key encodes to; value: the repartition offset the batch
--   read up to, and its base, the changelog offset the task had read up to) that ends the
--   batch: a restore applies a batch's changes only once it reads its marker, and only when
--   its writer had read every batch held before it (see catch_up), so a task that failed
--   half-way or a process that had lost the partition leaves nothing a restore would apply.
--   The marker is written once the batch's outputs are done (operator cluster_commit_markers,
--   run by dstream.cluster.keyed before the batch's input offsets are committed): a process
--   killed before its outputs leaves its batch's changes unheld, and the next owner applies
--   the batch again and emits what it emitted (at least once), where a marker written with
--   the changes would have made the next owner skip a window or a join's pairs never output.
--   The marker's offset (store.applied) makes the keyed stage read each repartition record
--   once: records below it were applied by whoever wrote the changelog and are skipped (a
--   batch whose changelog was written but whose offsets were not committed before a kill).
--   map_with_state's stage (cluster_map_state) is the same around the one-process operator.
-- Registered into dstream.worker (see its list of operator modules).
local buffer = require("string.buffer")
local bundles = require("dstream.worker.bundles")
local once = require("dstream.worker.once")
local core = require("dstream.core")
local ffi = require("ffi")
require("dstream.worker.cdefs")
local C = ffi.C

return function(W)
  local operators, terminals, current = W.operators, W.terminals, W.current
  local stores = require("dstream.worker.store")
  local task = require("dstream.worker.task")
  local key_hash, key_of, rekey = task.key_hash, task.key_of, task.rekey
  local type, tostring, tonumber, error = type, tostring, tonumber, error

  local fault_after_sends -- (below)
  local readers = {} -- this VM's changelog readers, by brokers and conf
  local function reader_for(spec)
    local key = spec.brokers .. "\0" .. spec.conf_key
    local r = readers[key]
    if not r then
      local err
      r, err = core.kafka_reader { brokers = spec.brokers, conf = spec.conf }
      if not r then error("cluster mode: " .. tostring(err), 0) end
      readers[key] = r
    end
    return r
  end

  -- The key of a batch's end in the changelog: string.buffer's encoding of nil, which no key
  -- has (a nil key is an error before it gets here).
  local MARKER = "\0"
  local enc = buffer.new()
  local dec = buffer.new()

  -- Test hooks (docs/architecture.md), once this VM's map tasks have sent n bundles on and they
  -- were delivered: DSTREAM_TEST_EXIT_AFTER_SENDS=n ends the process, as a SIGKILL would (a
  -- kill in the middle of a batch's sends, at a known point); DSTREAM_TEST_FAIL_AFTER_SENDS=n
  -- fails the task once (its retry sends its bundles again).
  local exit_after = tonumber(os.getenv("DSTREAM_TEST_EXIT_AFTER_SENDS") or "")
  local fail_after = tonumber(os.getenv("DSTREAM_TEST_FAIL_AFTER_SENDS") or "")
  if exit_after then pcall(ffi.cdef, "void _exit(int status);") end
  local sends = 0
  function fault_after_sends(spec)
    if not (exit_after or fail_after) then return end
    sends = sends + 1
    if sends ~= (exit_after or fail_after) then return end
    W.kafka_producer_to(spec, spec.topic, spec.who).p:flush(spec.kafka_ms)
    if fail_after then error("DSTREAM_TEST_FAIL_AFTER_SENDS: failing after " .. sends .. " bundles sent", 0) end
    io.stderr:write("DSTREAM_TEST_EXIT_AFTER_SENDS: exiting after ", sends, " bundles sent\n")
    ffi.C._exit(137)
  end

  -- This VM's producer for the spec, made ready to send to `topic` (dstream.worker.ops.kafka).
  local function producer_to(spec, topic) return W.kafka_producer_to(spec, topic, spec.who).p end

  -- A map side's writer to the repartition topic: send(k, v[, extra]) adds the entry
  -- (k, v[, extra]) to the bundle of partition hash(k) % n, or of partition `part` when given
  -- (k nil: an entry for a partition, not a key); done() sends the bundles left
  -- (dstream.worker.bundles: one message per partition written, more past its size limit),
  -- waits for every message's delivery and emits how many messages were sent.
  local function sender(t, spec)
    local topic, n = spec.topic, spec.partitions
    local p = producer_to(spec, topic)
    p:mark()
    local add, full, finish = bundles.writer(function(part, bytes)
      local ok, err = p:send(topic, bytes, nil, part)
      if not ok then error(spec.who .. ": " .. tostring(err), 0) end
      fault_after_sends(spec)
    end, nil, spec.origin)
    local function send(k, v, extra, part)
      if k ~= nil then
        if type(k) == "table" then k = key_of(k, spec.who) end
        part = key_hash(k, spec.who, v) % n
      end
      local b = add(part)
      b:encode(k)
      b:encode(v == nil and false or v)
      if extra ~= nil then b:encode(extra) end
      full(part, b)
    end
    return send, function()
      local sent = finish()
      local ok, err = p:flush(spec.kafka_ms)
      if not ok then error(spec.who .. ": writing to " .. topic .. ": " .. tostring(err), 0) end
      W.emit(t, 0, 1, false, { sent })
    end
  end

  -- The map side: each pair to partition hash(key) % n of the repartition topic.
  function terminals.repartition_send(t, spec)
    local send, done = sender(t, spec)
    return function(k, v) send(k, v) end, done
  end

  -- Applies the changelog of partition `part` from store.cl_end up to `high` to the store.
  -- A batch's changes hold once its marker ("applied base") is read, and only when its writer
  -- had read every batch held before it (base, the changelog's end when it began, is at or
  -- past the end of the last batch held): a process that lost the partition without knowing
  -- it (a session that timed out, the mock's "illegal generation") may still write a batch
  -- while the next owner runs, and that batch is stale; Kafka would fence it with
  -- transactions, which the embedded broker lacks. Changes written before the base (an
  -- attempt that failed half-way) are not its own. Returns the changes and bytes read.
  local function catch_up(spec, store, part, r, low, high, apply, t0)
    local from = store.cl_end or 0
    if low > from then
      error(string.format("%s: the changelog %s [%d] starts at offset %d, but the state kept here"
        .. " covers it only up to %d: records in between are gone (deleted by retention, or the"
        .. " embedded broker's 5 MiB log per partition), so state partition %d cannot be restored;"
        .. " start the cluster afresh under a new name", spec.who, spec.changelog, part, low,
        from, part), 0)
    end
    local states, touched, now, keys, bytes = store.states, store.touched, current.time, 0, 0
    local held_end = from -- the end of the last batch held (or where this store stood)
    local ended = from -- the end of the last batch read, held or not: after it, changes whose
    -- marker is not written yet (its writer's outputs still running), or never will be
    local pk, pv, po, n = {}, {}, {}, 0 -- changes read since the last marker
    -- Restores in progress on the live page (dstream.cluster.status): tag = the operator's
    -- restore accumulator, then changes and bytes read so far, since when.
    local task, tag = current.task, spec.restore_acc or 0
    while from < high do
      C.ds_task_progress(task, tag, keys, bytes, t0)
      local ks, vs, nxt, offs = r:read(spec.changelog, part, from, high, 10000, spec.kafka_ms)
      if not ks then error(spec.who .. ": restoring state partition " .. part .. ": " .. tostring(vs), 0) end
      for i = 1, #ks do
        local k, v = ks[i], vs[i]
        if k == MARKER then -- the end of a batch
          local nl = v:find("\n", 1, true) -- (then the origins the batch applied)
          local applied, base, meta = (nl and v:sub(1, nl - 1) or v):match("^(%d+) ?(%d*) ?(%S*)$")
          base = tonumber(base) or held_end
          if base >= held_end then
            for j = 1, n do
              if po[j] >= base then
                local key, s = pk[j], pv[j]
                if apply then
                  apply(store, key, s)
                elseif s == false then
                  states[key], touched[key] = nil, nil
                else
                  states[key], touched[key] = s, now -- (map_with_state's timeouts count from here)
                end
              end
            end
            if meta ~= "" then store.meta = tonumber(meta) end
            if nl then
              store.once = store.once or once.new()
              for _, o in ipairs(buffer.decode(v:sub(nl + 1))) do once.note(store.once, o) end
            end
            store.applied = math.max(store.applied or 0, tonumber(applied))
            held_end = offs[i] + 1
          else
            core.log("warn", string.format("%s: changelog %s [%d]: the batch ending at offset %d is"
              .. " ignored: its writer began at offset %d, before the batch held up to %d was"
              .. " written (a process that had lost the partition)", spec.who, spec.changelog,
              part, offs[i], base, held_end))
          end
          pk, pv, po, n = {}, {}, {}, 0
          ended = offs[i] + 1
        else
          local key = k -- (apply decodes it)
          if not apply then
            dec:set(k)
            key = dec:decode()
            if type(key) == "table" then key = key_of(key, spec.who) end
          end
          local s = false
          if v ~= false then
            dec:set(v)
            s = dec:decode()
          end
          n = n + 1
          pk[n], pv[n], po[n] = key, s, offs[i]
          keys, bytes = keys + 1, bytes + #k + (v and #v or 0)
          -- (also within a read of 10,000: the page follows a restore as it goes)
          if keys % 1000 == 0 then C.ds_task_progress(task, tag, keys, bytes, t0) end
        end
      end
      from = nxt
    end
    C.ds_task_progress(task, 0, 0, 0, 0)
    -- Read again next time from the last marker: a batch whose marker comes later holds then.
    store.cl_end = ended
    if not apply then rekey(states) end
    return keys, bytes
  end

  -- Whether a and b are the same state for the changelog (tables are written every time).
  local function same(a, b) return a == b and type(a) ~= "table" end

  -- Initial state (update_state_by_key's and map_with_state's `initial`): every process builds
  -- the same initial pairs from the same script and its workers keep those of each state
  -- partition (operator cluster_seed, run at the process's first batch), until the partition's
  -- changelog is known to hold a batch. A partition is seeded once, by the first owner that
  -- finds no batch in its changelog (the cluster's first start): seed() writes the pairs there as
  -- a batch of their own, so every later owner restores them like any state, and no later start
  -- or move seeds again.
  local seeds = {} -- [state id][state partition] = { [key] = state }
  function operators.cluster_seed(spec, _, fin)
    local part, loaded = current.part, {}
    return function(k, v)
      if type(k) == "table" then k = key_of(k, spec.who) end
      loaded[k] = v
    end, function()
      local on_success = current.on_success
      on_success[#on_success + 1] = function()
        local by_part = seeds[spec.state] or {}
        seeds[spec.state] = by_part
        by_part[part] = loaded
      end
      fin()
    end
  end

  -- The sender of a changelog partition: send(encoded key, encoded value or nil) and flush().
  local function changelog_sender(spec, part)
    local topic, sent = spec.changelog, 0
    local p = producer_to(spec, topic)
    p:mark()
    local function send(k, v)
      local ok, err = p:send(topic, v, k, part)
      if not ok then error(spec.who .. ": " .. tostring(err), 0) end
      sent = sent + 1
    end
    local function put(k, s, slot) -- a change: the key (after its slot) and state in string.buffer's encoding
      local sv
      if s ~= nil then
        enc:reset()
        enc:encode(s)
        sv = enc:tostring()
      end
      enc:reset()
      if slot ~= nil then enc:encode(slot) end
      enc:encode(k)
      send(enc:tostring(), sv)
    end
    local function flush()
      local ok, err = p:flush(spec.kafka_ms)
      if not ok then error(spec.who .. ": writing to " .. topic .. ": " .. tostring(err), 0) end
      return sent
    end
    return send, put, flush
  end

  -- Writes the initial pairs of a partition whose changelog holds no batch (from `high` on) as
  -- a batch that read no repartition record (marker "0 high"), then reads them back as a restore
  -- does: two processes seeding at once write the same pairs, and the second batch is ignored
  -- (its base is behind the first's end).
  local function seed(spec, store, part, r, high, initial)
    local send, put, flush = changelog_sender(spec, part)
    for k, s in pairs(initial) do put(k, s) end
    send(MARKER, string.format("0 %d", high))
    local sent = flush()
    local low, now_high = r:watermarks(spec.changelog, part, spec.kafka_ms)
    if not low then error(spec.who .. ": " .. tostring(now_high), 0) end
    catch_up(spec, store, part, r, low, now_high, nil, core.now_ms())
    core.log("info", string.format("%s: state partition %d seeded with its %d initial keys (the"
      .. " changelog held no batch: the cluster's first start)", spec.who, part, sent - 1))
  end

  -- The start of a keyed-stage task: state partition `part`'s store brought up to date from
  -- the changelog; returns the store, the reader and how many of the range's records were
  -- applied already (skipped).
  local function prepare(spec, part, apply)
    local store = stores.store_of(spec.state, part)
    local r = reader_for(spec)
    local low, high = r:watermarks(spec.changelog, part, spec.kafka_ms)
    if not low then error(spec.who .. ": " .. tostring(high), 0) end
    if (store.cl_end or 0) ~= high then -- (an empty changelog has nothing to restore)
      local t0, from = core.now_ms(), store.cl_end or 0
      local keys, bytes = catch_up(spec, store, part, r, low, high, apply, t0)
      local ms = core.now_ms() - t0
      core.log("info", string.format("%s: state partition %d brought up to date from the changelog"
        .. " (offsets %d to %d): %d changes (%d bytes) in %d ms", spec.who, part, from, high, keys,
        bytes, ms))
      if spec.restore_acc then -- /metrics' dstream_cluster_restore* (dstream.cluster.metrics)
        local accums = current.accums or {}
        current.accums = accums
        accums[spec.restore_acc] = { n = 1, changes = keys, bytes = bytes, ms = ms,
          recent = { { partition = part, from = from, to = high, changes = keys, bytes = bytes,
            ms = ms, at = t0 + ms } } }
      end
    end
    local initial = seeds[spec.state]
    if initial and initial[part] then
      if store.applied == nil then -- (no batch of this partition was ever held)
        seed(spec, store, part, r, high, initial[part])
        high = store.cl_end
      end
      initial[part] = nil
    end
    return store, r, (store.applied or 0) - spec.from, high
  end

  -- Batches whose changes are in their changelog partition, waiting for their marker (see
  -- cluster_commit_markers): this VM's, in the order their tasks succeeded.
  local unmarked = {}

  -- The end of a keyed-stage task: each change put(key, state[, slot]) that each_change(put)
  -- gives (state nil: removed) to the changelog; the batch's marker (with `meta`, a number a
  -- restore puts in store.meta, when given) waits for the batch's outputs. The changelog's
  -- key is the key in string.buffer's encoding, after the slot's when given (windows: the
  -- pane's end or the window's start; their `apply` decodes both).
  local function write_changes(spec, part, store, r, base, each_change, meta)
    local topic = spec.changelog
    local _, put, flush = changelog_sender(spec, part)
    each_change(put)
    local applied = math.max(spec["until"], store.applied or 0)
    local marker = meta and string.format("%d %d %.17g", applied, base, meta)
      or string.format("%d %d", applied, base)
    -- The origins of the bundles this task applied (its decoder's): a restore or a move
    -- brings the record along, so a batch read again after a kill is skipped there too.
    local took = current.once_took
    current.once_took = nil
    if took and #took > 0 then marker = marker .. "\n" .. buffer.encode(took) end
    local sent = flush()
    local _, cl_end = r:watermarks(topic, part, spec.kafka_ms)
    if not cl_end then error(spec.who .. ": cannot read the changelog's end after writing to it", 0) end
    -- Someone else wrote to the partition since this task read its end (a process that had
    -- lost it): whose batch holds is the changelog's order, so read it again (the retry
    -- catches up) rather than keep a state a restore would not rebuild.
    if cl_end ~= base + sent then
      error(string.format("%s: changelog %s [%d] holds %d records more than this task wrote: another"
        .. " process wrote to it meanwhile; the batch is retried after reading them", spec.who,
        topic, part, cl_end - base - sent), 0)
    end
    local on_success = current.on_success
    on_success[#on_success + 1] = function()
      unmarked[#unmarked + 1] = { spec = spec, part = part, store = store, marker = marker,
        at = cl_end, applied = applied, took = took }
    end
  end

  -- The markers of this VM's batches (write_changes), once the batch's outputs are done and
  -- before its input offsets are committed (dstream.cluster.keyed runs it on every worker).
  -- They wait here until a flush delivered them all, so the retry of a task whose flush failed
  -- sends them again. A changelog partition that grew by more than its marker (another process
  -- took the partition over while this batch ran, or a retry delivered a marker twice, which
  -- restores ignore: its base is behind) drops the state partition here: the changelog's order
  -- says whose batch holds, and the next task that needs it restores it from there.
  function operators.cluster_commit_markers(_, _, fin)
    return function() end, function()
      local producers = {}
      for _, u in ipairs(unmarked) do
        local p = producer_to(u.spec, u.spec.changelog)
        if not producers[p] then
          p:mark()
          producers[p] = u.spec
        end
        local ok, err = p:send(u.spec.changelog, u.marker, MARKER, u.part)
        if not ok then error(u.spec.who .. ": " .. tostring(err), 0) end
      end
      for p, spec in pairs(producers) do
        local ok, err = p:flush(spec.kafka_ms)
        if not ok then error(spec.who .. ": writing to " .. spec.changelog .. ": " .. tostring(err), 0) end
      end
      local list = unmarked
      unmarked = {}
      for _, u in ipairs(list) do
        local spec, store = u.spec, u.store
        local _, cl_end = reader_for(spec):watermarks(spec.changelog, u.part, spec.kafka_ms)
        if cl_end == u.at + 1 then
          store.applied, store.cl_end = u.applied, cl_end
          if u.took and #u.took > 0 then
            store.once = store.once or once.new()
            for _, o in ipairs(u.took) do once.note(store.once, o) end
          end
        else
          core.log("warn", string.format("%s: changelog %s [%d] holds %d record(s) after this batch's"
            .. " changes where its marker alone was expected (another process wrote to it while this"
            .. " batch ran, the partition having moved, or a retried marker): state partition %d is"
            .. " read again from the changelog when next needed here", spec.who, spec.changelog,
            u.part, cl_end and cl_end - u.at or -1, u.part))
          stores.drop(spec.state, u.part)
        end
      end
      fin()
    end
  end

  -- Messages of the repartition topic: each a bundle of entries (key, value) (and a third
  -- value when `extra`) pushed one by one (dstream.worker.bundles), the first `skip` messages
  -- dropped whole (applied already: store.applied counts messages, not entries). A bundle whose
  -- input ranges this state partition applied already (dstream.worker.once: a batch of a
  -- killed process that its partitions' next owners read again, or a task re-run) is skipped
  -- too, and its entries counted (spec.replayed_acc: /metrics'
  -- dstream_cluster_replayed_entries_total). The task's records in are the entries it applied,
  -- not the messages; so is the figure the driver gives the batch's "(repartition)" input
  -- (spec.entries_acc, dstream.cluster.entry_counts).
  local function decoder(spec, skip, push, extra)
    local part = current.part
    local store = stores.store_of(spec.state, part)
    local took, mine = {}, once.new() -- the origins applied by this task
    local replayed, partial = 0, 0
    current.once_took = took
    local each = bundles.reader(push, extra, function(origin)
      local verdict = once.verdict(store.once, origin)
      if verdict == "new" then verdict = once.verdict(mine, origin) end
      if verdict == "applied" then return false end
      if verdict == "partial" then partial = partial + 1 end
      if origin then
        once.note(mine, origin)
        origin.k = nil -- (the changelog's marker keeps the ranges, not the key made of them)
        took[#took + 1] = origin
      end
      return true
    end)
    local acc, racc = spec.entries_acc, spec.replayed_acc
    local entries = 0
    current.records_in = 0
    if acc or racc then current.accums = current.accums or {} end
    if acc then current.accums[acc] = 0 end
    if racc then current.accums[racc] = 0 end
    local on_success = current.on_success
    on_success[#on_success + 1] = function()
      if replayed > 0 then
        core.log("info", string.format("%s: state partition %d skipped %d entries applied already"
          .. " (a batch read again after its process was killed, or a task re-run)", spec.who,
          part, replayed))
      end
      if partial > 0 then
        core.log("warn", string.format("%s: state partition %d applied %d bundle(s) of a batch read"
          .. " again whose first run it had applied in part (a kill between the pieces of a bundle"
          .. " over 512 KiB): their records may count twice", spec.who, part, partial))
      end
    end
    return function(raw)
      if skip > 0 then
        skip = skip - 1
        return
      end
      local n, _, skipped = each(raw)
      if skipped then
        replayed = replayed + n
        if racc then current.accums[racc] = replayed end
        return
      end
      entries = entries + n
      current.records_in = entries
      if acc then current.accums[acc] = entries end
    end
  end

  -- A state partition that moved to another process (dstream.cluster.holding): its store
  -- leaves this worker's memory once the task succeeded, and a full collection gives the
  -- memory back now rather than after the next batches' garbage.
  function operators.cluster_drop_state(spec, _, fin)
    return function() end, function()
      local on_success, part = current.on_success, current.part
      on_success[#on_success + 1] = function()
        if stores.drop(spec.state, part) then collectgarbage() end
      end
      fin()
    end
  end

  -- What dstream.worker.ops.cluster_window builds its keyed stages with.
  W.cluster = { sender = sender, prepare = prepare, write_changes = write_changes, decoder = decoder }

  -- update_state_by_key's keyed stage.
  function operators.cluster_update_state(spec, _, fin)
    local f = W.state_fn(spec)
    local part = current.part
    local store, r, skip, base = prepare(spec, part)
    local push, take = W.value_lists()
    return decoder(spec, skip, push), function()
      local old = store.states
      local new, keys = W.next_states(f, old, take())
      W.report_keys(spec, keys)
      write_changes(spec, part, store, r, base, function(put)
        for k, s in pairs(new) do
          if not same(old[k], s) then put(k, s) end
        end
        for k in pairs(old) do
          if new[k] == nil then put(k, nil) end
        end
      end)
      local on_success = current.on_success
      on_success[#on_success + 1] = function() store.states = new end
      fin()
    end
  end

  -- map_with_state's keyed stage: the operator of one process (dstream.worker.ops.state's
  -- map_state) over the decoded records, then its changes to the changelog.
  function operators.cluster_map_state(spec, nxt, fin)
    local part = current.part
    local store, r, skip, base = prepare(spec, part)
    local push, inner_fin = operators.map_state(spec, nxt, function() end)
    return decoder(spec, skip, push), function()
      current.state_changes = nil
      inner_fin()
      local changes, REMOVED = current.state_changes or {}, W.REMOVED
      current.state_changes = nil
      write_changes(spec, part, store, r, base, function(put)
        for k, c in pairs(changes) do
          if c == REMOVED then put(k, nil) else put(k, c) end
        end
      end)
      fin()
    end
  end
end
