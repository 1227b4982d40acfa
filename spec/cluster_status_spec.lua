-- Cluster mode (issue 19): what a process says about itself, and what it keeps of state
-- partitions that moved away. Two processes of one cluster job (two contexts in this process,
-- each with its own workers) against the embedded broker: the first restores a changelog of
-- 60,000 keys (the restores are watched while they run, through the page's JSON), then the
-- second joins and takes some state partitions. The first then counts, keeps in its workers'
-- memory and snapshots only the partitions it still owns: its dstream_state_keys is the
-- number of keys (counted here from the key hash) in them, the moved partitions' stores read
-- empty on its worker, and its worker's Lua memory falls with the keys that left.
package.path = "spec/helpers/?.lua;" .. package.path
local buffer = require("string.buffer")
local dstream = require("dstream")
local kafka = require("dstream.kafka")
local core = require("dstream.core")
local rdd_mod = require("dstream.rdd")
local key_hash = require("dstream.worker.task").key_hash
local ffi = require("ffi")
pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")

local N, KEYS, WORDS = 4, 40000, 200
local APP = "spec-hold"

local function metric(ctx, name, labels)
  local text = ctx:metrics():render()
  local v = text:match("\n" .. name:gsub("[%-%.]", "%%%0") .. (labels or ""):gsub("[%(%)%.%-]", "%%%0") .. " ([%d.e+-]+)")
  return tonumber(v)
end

-- The Lua memory of a context's one worker after a full collection there (a shipped closure
-- runs it on the worker), as dstream_worker_lua_memory_bytes shows it.
local function collected_memory(ctx)
  ctx:parallelize({ 1 }, 1):foreach(function() jit.flush(); collectgarbage(); collectgarbage() end)
  return metric(ctx, "dstream_worker_lua_memory_bytes", '{worker="0"}')
end

describe("cluster mode: a process's figures and memory", function()
  it("shows its member id, partitions and restores (while they run too); a state partition that moved away leaves its key count, memory and snapshots", function()
    local changelog = APP .. "-seen-changelog"
    local mock = kafka.mock_cluster { brokers = 1, topics = { hin = 2, [changelog] = N,
      [APP .. "-seen-repartition"] = N } }
    local B = mock:bootstrap()
    -- The state's changelog as an earlier run left it (the keyed stage's format: string.buffer
    -- key and state, then each partition's batch marker), and words for both operators.
    local producer = kafka.producer { brokers = B }
    local enc = buffer.new()
    local in_part, part_of = {}, {} -- partition -> the keys the state holds there in the end; key -> partition
    for p = 0, N - 1 do in_part[p] = 0 end
    for i = 1, KEYS do
      local k = "key" .. i
      local p = key_hash(k) % N
      assert(producer:send(changelog, enc:reset():encode(1):tostring(), enc:reset():encode(k):tostring(), p))
      in_part[p], part_of[k] = in_part[p] + 1, p
    end
    for p = 0, N - 1 do assert(producer:send(changelog, "0 0", "\0", p)) end
    for i = 1, WORDS do
      local w = "w" .. i
      assert(producer:send("hin", w, nil, i % 2))
      part_of[w] = key_hash(w) % N
      in_part[part_of[w]] = in_part[part_of[w]] + 1
    end
    assert(producer:flush(30000))
    producer:close()

    local function job()
      local ctx = dstream.context { batch = "1s", clock = "manual", workers = 1, cluster = APP }
      -- A session timeout of 3 s for fast moves; spec/e2e/cluster_defaults.sh is the twin at
      -- the defaults (and reads /api/streams of a process owning every state partition).
      local s = ctx:kafka_stream { brokers = B, topic = "hin", start = "earliest",
        conf = { ["session.timeout.ms"] = 3000, ["heartbeat.interval.ms"] = 300 } }
      -- map_with_state: each key's count, kept across the cluster's processes.
      local seen = s:map(function(w) return w, 1 end):map_with_state { partitions = N,
        fn = function(_, v, state) state:update((state:get() or 0) + v) end }:name("seen")
      seen:foreach_rdd(function() end)
      local snap -- the last batch's state_snapshots()
      seen:state_snapshots():foreach_rdd(function(rdd) snap = rdd end)
      return ctx, seen, function() return snap end
    end
    local function status(ctx)
      local c = ctx.monitor:streams_json().cluster
      local by = {}
      for _, op in ipairs(c.state) do by[op.operator] = op end
      return c, by
    end

    local ctx1, seen1, snap1 = job()
    local ctx2, seen2
    local ok, err = pcall(function()
      ctx1:start()
      local deadline = os.time() + 30
      while #(seen1:kafka_stats().assigned or {}) < N do
        assert(os.time() < deadline, "the first process got no state partitions within 30 s")
        ffi.C.poll(nil, 0, 50)
      end
      -- Its first batch restores the four partitions; the page's JSON, read every 2 ms
      -- meanwhile, shows them running: partition, worker, changes and bytes so far, seconds.
      local running, most = {}, 0
      local poll = core.timer(function()
        local _, by = status(ctx1)
        for _, r in ipairs(by.seen and by.seen.restoring or {}) do
          running[r.partition] = true
          most = math.max(most, r.changes)
          assert(r.worker == 0 and r.seconds >= 0 and r.bytes >= 0, "a restore's figures")
        end
      end)
      poll:start(2, 2)
      ctx1:advance(1)
      poll:stop()
      poll:close()
      assert.is_true(next(running) ~= nil, "no restore was seen running")
      assert.is_true(most > 0, "no running restore had read changes yet when seen")
      local c, by = status(ctx1)
      assert.is_string(c.member_id)
      assert.are.equal(APP, c.group)
      assert.are.same({ 0, 1, 2, 3 }, by.seen.owned)
      assert.are.equal(0, #by.seen.restoring)
      assert.are.same({ count = 4, changes = KEYS, bytes = by.seen.restores.bytes,
        seconds = by.seen.restores.seconds }, by.seen.restores)
      assert.are.equal(4, #by.seen.recent_restores)
      assert.are.equal(KEYS, by.seen.keys)
      -- The words reach the state a batch or more later (through the repartition topic).
      deadline = os.time() + 15
      repeat
        assert(os.time() < deadline, "the words did not reach the state within 15 s")
        ctx1:advance(1)
        c, by = status(ctx1)
      until by.seen.keys == KEYS + WORDS and snap1():count() == KEYS + WORDS
      local inputs = {}
      for _, i in ipairs(c.inputs) do inputs[i.name] = i end
      assert.are.same({ "hin[0]", "hin[1]" }, inputs.hin.assigned)
      assert.are.equal("seen", inputs["map_with_state (repartition)"].state_of)
      assert.are.equal(KEYS + WORDS, metric(ctx1, "dstream_state_keys", '{operator="seen"}'))
      assert.are.equal(1, metric(ctx1, "dstream_cluster_member", string.format('{input="hin",group="%s",member_id="%s"}', APP, inputs.hin.member_id)))
      assert.are.equal(2, metric(ctx1, "dstream_cluster_assigned_partitions", '{input="hin"}'))
      local before = collected_memory(ctx1)

      -- A second process joins: the group moves some state partitions to it.
      ctx2, seen2 = job()
      ctx2:start()
      deadline = os.time() + 40
      local moved
      repeat
        assert(os.time() < deadline, "no state partition moved within 40 s")
        ctx1:advance(1)
        ctx2:advance(1)
        local _, by1 = status(ctx1)
        local _, by2 = status(ctx2)
        moved = #by1.seen.owned < N and #by2.seen.owned > 0
      until moved
      local _, by1 = status(ctx1)
      local owned, expect, gone = {}, 0, {}
      for _, p in ipairs(by1.seen.owned) do owned[p], expect = true, expect + in_part[p] end
      for p = 0, N - 1 do if not owned[p] then gone[#gone + 1] = p end end
      -- Keys: only the partitions it owns, as the key hash places them.
      assert.are.equal(expect, by1.seen.keys)
      assert.are.equal(expect, metric(ctx1, "dstream_state_keys", '{operator="seen"}'))
      -- Memory: the moved partitions' stores read empty on its worker, the others whole.
      local state_id = seen1.state_id
      for p = 0, N - 1 do
        local held = rdd_mod.state_source(ctx1, state_id, N, nil, { p }):count()
        assert.are.equal(owned[p] and in_part[p] or 0, held, string.format("state partition %d on the first"
          .. " process (owning %s; the second owns %s)", p, table.concat(by1.seen.owned, ","),
          table.concat(select(2, status(ctx2)).seen.owned, ",")))
      end
      local after = collected_memory(ctx1)
      print(string.format("\n# first process: state partitions %s kept, %s moved; %d of %d keys kept;"
        .. " its worker's Lua memory after a full collection %.1f MB -> %.1f MB",
        table.concat(by1.seen.owned, ","), table.concat(gone, ","), expect, KEYS + WORDS, before / 1e6, after / 1e6))
      assert.is_true(after < before * (expect / (KEYS + WORDS) + 0.1),
        string.format("memory %d -> %d with %d of %d keys kept", before, after, expect, KEYS + WORDS))
      -- state_snapshots(): the keys of the partitions it owns now.
      local want, got = {}, {}
      for k, p in pairs(part_of) do if owned[p] then want[#want + 1] = k end end
      for _, kv in ipairs(snap1():collect()) do got[#got + 1] = kv[1] end
      table.sort(want)
      table.sort(got)
      assert.are.equal(#want, #got)
      assert.are.same(want, got)
    end)
    pcall(ctx1.stop, ctx1)
    if ctx2 then pcall(ctx2.stop, ctx2) end
    mock:close()
    if not ok then error(err, 0) end
  end)
end)
