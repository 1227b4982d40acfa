-- Kafka (dstream.kafka) against the embedded broker in this process (mock_cluster): the direct
-- stream (one input partition per Kafka partition, offset ranges, commits after the batch,
-- rate limits, explicit positions), records as values, pairs or tables, decode with its
-- error policies and dead letters, the to_kafka sink (idempotent and exactly once, delivery
-- failures fail the batch), and a broker going down and back up. Both assignment modes:
-- every partition assigned by the source itself at positions fixed inside ctx:start() (the
-- default), and the consumer group's (assign = "group": each group's first join takes the
-- mock about 3 s, its initial rebalance delay).
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local dstream = require("dstream")
local kafka = require("dstream.kafka")
local sleep_ms, wait_for = H.sleep_ms, H.wait_for

local function pending(s) return s:kafka_stats().pending end

local function manual(opts)
  opts = opts or {}
  return dstream.context { batch = "1s", clock = "manual", workers = opts.workers or 2,
    max_task_attempts = opts.max_task_attempts }
end

-- Runs fn(ctx) and always stops ctx afterwards.
local function with_ctx(ctx, fn)
  local ok, err = pcall(fn, ctx)
  pcall(ctx.stop, ctx)
  if not ok then error(err, 0) end
end

local function sorted(list, key)
  table.sort(list, function(a, b) return H.repr(key and key(a) or a) < H.repr(key and key(b) or b) end)
  return list
end

describe("kafka", function()
  local mock, B, producer

  setup(function()
    mock = kafka.mock_cluster { brokers = 1, topics = { plain = 4, plain_group = 4, keyed = 2, dec = 2,
      rate = 1, input = 3, out1 = 2, out2 = 2, dlq = 1, late = 3, shared = 2, restored = 2, rerun = 2, eo_in = 2,
      eo_out = 1, clu = 4 } }
    B = mock:bootstrap()
    producer = kafka.producer { brokers = B }
  end)

  teardown(function()
    if producer then producer:close() end
    if mock then mock:close() end
  end)

  local function produce(topic, values, key_of, headers_of)
    for i, v in ipairs(values) do
      assert(producer:send(topic, v, key_of and key_of(i, v) or nil, nil, headers_of and headers_of(i) or nil))
    end
    assert(producer:flush(10000))
  end

  it("mock_cluster: brokers on 127.0.0.1, topics, and checked broker ids", function()
    local m = kafka.mock_cluster { brokers = 3, topics = { a = 2 } }
    local addrs = {}
    for a in m:bootstrap():gmatch("[^,]+") do addrs[#addrs + 1] = a end
    assert.are.equal(3, #addrs)
    for _, a in ipairs(addrs) do assert.truthy(a:match("^127%.0%.0%.1:%d+$")) end
    assert.are.equal(2, require("dstream.core").kafka_partitions(m:bootstrap(), "a"))
    assert.has_error(function() m:broker_down(7) end)
    m:broker_down(2)
    m:broker_up(2)
    m:close()
    assert.has_error(function() m:bootstrap() end, "the mock cluster is closed")
  end)

  for _, mode in ipairs { "all", "group" } do
    local topic = mode == "all" and "plain" or "plain_group"
    local group = "g-" .. topic
    it("reads every value once, one partition per Kafka partition, commits after each batch (assign = "
        .. mode .. ")", function()
      local values = {}
      for i = 1, 400 do values[i] = "v" .. i end
      produce(topic, values, function(i) return "k" .. i end)
      with_ctx(manual(), function(ctx)
        local s = ctx:kafka_stream { brokers = B, topics = { topic }, group = group, start = "earliest",
          assign = mode }
        local batches = {}
        s:foreach_rdd(function(rdd, time)
          batches[#batches + 1] = { time = time, values = rdd:collect(), nparts = rdd:num_partitions(),
            ranges = kafka.offset_ranges(rdd) }
        end)
        ctx:start()
        assert.is_true(wait_for(function() return pending(s) >= 400 end))
        ctx:advance(1)
        assert.are.same(sorted(H.deep_copy(values)), sorted(batches[1].values))
        assert.are.equal(4, batches[1].nparts)
        local total = 0
        for _, r in ipairs(batches[1].ranges) do
          assert.are.equal(0, r.from)
          assert.are.equal(r.count, r["until"] - r.from)
          total = total + r.count
        end
        assert.are.equal(400, total)
        -- committed offsets are the ends of the completed batch
        local committed
        assert.is_true(wait_for(function()
          committed = kafka.committed { brokers = B, group = group, topic = topic }
          local sum = 0
          for p = 0, 3 do sum = sum + (committed[p] or 0) end
          return sum == 400
        end))
        for _, r in ipairs(batches[1].ranges) do assert.are.equal(r["until"], committed[r.partition]) end
        assert.are.same(s:positions(), (function()
          local out = {}
          for _, r in ipairs(batches[1].ranges) do
            out[#out + 1] = { topic = topic, partition = r.partition, offset = r["until"] }
          end
          return out
        end)())
        -- the next batch starts where the last one ended
        produce(topic, { "x1", "x2", "x3", "x4", "x5", "x6" }, function(i) return "k" .. i end)
        assert.is_true(wait_for(function() return pending(s) >= 6 end))
        ctx:advance(1)
        assert.are.same({ "x1", "x2", "x3", "x4", "x5", "x6" }, sorted(batches[2].values))
        for i, r in ipairs(batches[2].ranges) do
          assert.are.equal(batches[1].ranges[i]["until"], r.from)
        end
        assert.are.same(batches[2].ranges, s:offset_ranges(batches[2].time))
      end)
    end)
  end

  it("start = \"latest\" is fixed inside ctx:start(): records produced right after it are read", function()
    local before = {}
    for i = 1, 30 do before[i] = "old" .. i end
    produce("late", before, function(i) return "k" .. i end)
    with_ctx(manual(), function(ctx)
      local s = ctx:kafka_stream { brokers = B, topic = "late", group = "g-late", start = "latest" }
      local got = {}
      s:foreach_rdd(function(rdd) for _, v in ipairs(rdd:collect()) do got[#got + 1] = v end end)
      ctx:start()
      -- position() right after start: the end of every partition, as concrete offsets
      local pos = s:positions()
      assert.are.equal(3, #pos)
      local sum = 0
      for i, o in ipairs(pos) do
        assert.are.equal("late", o.topic)
        assert.are.equal(i - 1, o.partition)
        sum = sum + o.offset
      end
      assert.are.equal(30, sum)
      -- at once, not after a group join: none of these may be lost
      produce("late", { "new1", "new2", "new3", "new4", "new5", "new6" }, function(i) return "n" .. i end)
      assert.is_true(wait_for(function() return pending(s) >= 6 end, 5))
      ctx:advance(1)
      assert.are.same({ "new1", "new2", "new3", "new4", "new5", "new6" }, sorted(got))
    end)
  end)

  it("starts without waiting for the group: a second job of the same group reads at once", function()
    with_ctx(manual(), function(first)
      local a = first:kafka_stream { brokers = B, topic = "shared", group = "g-shared", start = "earliest" }
      a:foreach_rdd(function() end)
      first:start()
      with_ctx(manual(), function(ctx)
        local s = ctx:kafka_stream { brokers = B, topic = "shared", group = "g-shared", start = "latest" }
        s:foreach_rdd(function() end)
        local t0 = require("dstream.core").now_ms()
        ctx:start()
        produce("shared", { "a", "b", "c", "d" }, function(i) return "k" .. i end)
        assert.is_true(wait_for(function() return pending(s) >= 4 end, 10))
        local ms = require("dstream.core").now_ms() - t0
        assert.is_true(ms < 2000, "the records took " .. ms .. " ms")
        assert.are.equal(2, s:kafka_stats().partitions)
        assert.is_true(wait_for(function() return pending(a) >= 4 end, 5)) -- both read everything
      end)
    end)
  end)

  it("partitions that appear while the job runs are read from their start, even with latest", function()
    mock:topic_error("appears", 3) -- no such topic, for clients
    with_ctx(manual(), function(ctx)
      local s = ctx:kafka_stream { brokers = B, topics = { "late", "appears" }, group = "g-appears",
        start = "latest" }
      local got = {}
      s:foreach_rdd(function(rdd) for _, v in ipairs(rdd:collect()) do got[#got + 1] = v end end)
      ctx:start()
      assert.are.equal(3, s:kafka_stats().partitions)
      assert.are.equal(0, s:kafka_stats().rejected) -- every figure the guide lists, without decode too
      mock:topic_error("appears", 0) -- now it has 4 partitions
      produce("appears", { "p1", "p2", "p3" }, function(i) return "k" .. i end)
      -- the metadata refresh (every 5 s) finds them; their records from offset 0 are read
      assert.is_true(wait_for(function() return s:kafka_stats().partitions == 7 end, 15))
      assert.is_true(wait_for(function() return pending(s) >= 3 end, 5))
      ctx:advance(1)
      assert.are.same({ "p1", "p2", "p3" }, sorted(got))
      local n = 0
      for _, o in ipairs(s:positions()) do
        if o.topic == "appears" then n = n + o.offset end
      end
      assert.are.equal(3, n)
    end)
  end)

  it("positions: a checkpoint's (restore) over the positions option, else the group's, else start", function()
    produce("restored", { "a0", "a1", "a2", "a3" }, function() return "same" end) -- one partition
    local function run(opts, restore, want)
      with_ctx(manual(), function(ctx)
        opts.brokers, opts.topic = B, "restored"
        local s = ctx:kafka_stream(opts)
        s:foreach_rdd(function() end)
        if restore then ctx.inputs[1]:restore(restore) end
        ctx:start()
        local got = {}
        for _, o in ipairs(ctx.inputs[1]:position()) do got[o.partition] = o.offset end
        assert.are.same(want, got)
      end)
    end
    run({ group = "g-r0", start = "earliest" }, nil, { [0] = 0, [1] = 0 })
    -- which partition holds the 4 records
    local full
    with_ctx(manual(), function(ctx)
      local s = ctx:kafka_stream { brokers = B, topic = "restored", group = "g-r0", start = "latest" }
      s:foreach_rdd(function() end)
      ctx:start()
      for _, o in ipairs(s:positions()) do if o.offset == 4 then full = o.partition end end
    end)
    assert.is_number(full)
    local other = 1 - full
    local at = function(a, b) return { [full] = a, [other] = b } end
    run({ group = "g-r1", start = "latest" }, nil, at(4, 0))
    run({ group = "g-r1", start = "earliest", positions = { { topic = "restored", partition = full, offset = 2 } } },
      nil, at(2, 0))
    run({ group = "g-r1", start = "earliest", positions = { { topic = "restored", partition = full, offset = 2 } } },
      { { topic = "restored", partition = full, offset = 3 } }, at(3, 0))
    run({ group = "g-r1", start = "latest", positions = { { topic = "restored", partition = full, offset = 1 } } },
      { { topic = "restored", partition = other, offset = 0 } }, at(1, 0))
    -- the group's committed offsets, when it has some
    with_ctx(manual(), function(ctx)
      local s = ctx:kafka_stream { brokers = B, topic = "restored", group = "g-r2", start = "earliest" }
      s:foreach_rdd(function() end)
      ctx:start()
      assert.is_true(wait_for(function() return pending(s) >= 4 end))
      ctx:advance(1) -- commits offset 4
    end)
    run({ group = "g-r2", start = "earliest" }, nil, at(4, 0))
    run({ group = "g-r2", start = "latest", positions = { { topic = "restored", partition = full, offset = 1 } } },
      nil, at(1, 0))
    -- past the end of the log (a topic made anew): the start policy's offset
    run({ group = "g-r3", start = "latest", positions = { { topic = "restored", partition = full, offset = 100 } } },
      nil, at(4, 0))
    run({ group = "g-r3", start = "earliest", positions = { { topic = "restored", partition = full, offset = 100 } } },
      nil, at(0, 0))
  end)

  it("exactly_once with checkpoints: a job stopped before its first batch restarts from the checkpoint of its start", function()
    produce("eo_in", { "a", "b", "c", "d", "e" }, function(i) return "k" .. i end)
    local dir = os.tmpname()
    os.remove(dir)
    local function job()
      local ctx = dstream.context { batch = "1s", clock = "manual", workers = 1, checkpoint = dir }
      local s = ctx:kafka_stream { brokers = B, topic = "eo_in", group = "g-eo", start = "latest" }
      s:to_kafka { brokers = B, topic = "eo_out", exactly_once = true }
      return ctx, s
    end
    local ok, err = pcall(function()
      for round = 1, 2 do
        local ctx, s = job()
        with_ctx(ctx, function()
          ctx:start() -- writes a checkpoint with the positions resolved at start, then stops
          local sum = 0
          for _, o in ipairs(s:positions()) do sum = sum + o.offset end
          assert.are.equal(5, sum, "round " .. round)
        end)
      end
    end)
    os.execute("rm -rf '" .. dir .. "'")
    if not ok then error(err, 0) end
  end)

  it("with_key gives (key, value) pairs and with_meta gives tables with headers", function()
    produce("keyed", { "a", "b", "c" }, function(i) return "k" .. i end,
      function(i) return i == 3 and { { key = "h", value = "x3" }, { key = "empty" } } or { { "h", "x" .. i }, { "empty" } } end)
    produce("keyed", { "tombstone-key" }, function() return nil end)
    local ok, err = pcall(producer.send, producer, "keyed", "x", nil, nil, { h = "x" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("headers must be a list of { name, value }", 1, true), err)
    assert(producer:send("keyed", nil, "deleted"))
    assert(producer:flush(10000))
    with_ctx(manual(), function(ctx)
      local kv = ctx:kafka_stream { brokers = B, topic = "keyed", group = "g-kv", start = "earliest", with_key = true }
      local meta = ctx:kafka_stream { brokers = B, topic = "keyed", group = "g-meta", start = "earliest", with_meta = true }
      local pairs_got, metas = {}, {}
      kv:reduce_by_key(function(a, b) return a .. b end):foreach_rdd(function(rdd)
        for _, p in ipairs(rdd:collect()) do pairs_got[#pairs_got + 1] = p end
      end)
      meta:foreach_rdd(function(rdd)
        for _, t in ipairs(rdd:collect()) do metas[#metas + 1] = t end
      end)
      ctx:start()
      assert.is_true(wait_for(function() return pending(kv) >= 5 and pending(meta) >= 5 end))
      ctx:advance(1)
      assert.are.same(sorted({ { "k1", "a" }, { "k2", "b" }, { "k3", "c" }, { false, "tombstone-key" },
        { "deleted", false } }), sorted(pairs_got))
      sorted(metas, function(t) return t.value or "" end)
      assert.are.equal(5, #metas)
      local first = metas[2] -- "a"
      assert.are.equal("a", first.value)
      assert.are.equal("k1", first.key)
      assert.are.equal("keyed", first.topic)
      assert.is_number(first.partition)
      assert.is_number(first.offset)
      assert.is_true(first.timestamp > 1.6e12)
      assert.are.same({ { key = "h", value = "x1" }, { key = "empty" } }, first.headers)
      -- headers given in that shape ({ key =, value = }) to send: the same
      assert.are.same({ { key = "h", value = "x3" }, { key = "empty" } }, metas[4].headers)
      local deleted = metas[1] -- the null value sorts first
      assert.are.equal("deleted", deleted.key)
      assert.is_nil(deleted.value)
    end)
  end)

  it("decode: rejected records go to a dead-letter file or topic, or are skipped, and are counted", function()
    produce("dec", { "1", "2", "oops", "4", "", "6" }, function(i) return "k" .. i end)
    local file = os.tmpname()
    os.remove(file)
    local function number(v)
      local n = tonumber(v)
      if not n then error("not a number: '" .. tostring(v) .. "'") end
      return n
    end
    with_ctx(manual(), function(ctx)
      local to_file = ctx:kafka_stream { brokers = B, topic = "dec", group = "g-dec1", start = "earliest",
        decode = number, dead_letter = { file = file } }
      local skipped = ctx:kafka_stream { brokers = B, topic = "dec", group = "g-dec2", start = "earliest",
        decode = function(v) return tonumber(v), "not a number" end, on_error = "skip", with_key = true }
      local to_topic = ctx:kafka_stream { brokers = B, topic = "dec", group = "g-dec3", start = "earliest",
        decode = number, on_error = "dead_letter", dead_letter = { topic = "dlq" } }
      local dlq = ctx:kafka_stream { brokers = B, topic = "dlq", group = "g-dlq", start = "earliest", with_meta = true }
      local got = { file = {}, skip = {}, topic = {}, dlq = {} }
      local function keep(list)
        return function(rdd) for _, v in ipairs(rdd:collect()) do list[#list + 1] = v end end
      end
      to_file:map(function(n) return n * 10 end):foreach_rdd(keep(got.file))
      skipped:foreach_rdd(keep(got.skip))
      to_topic:foreach_rdd(keep(got.topic))
      dlq:foreach_rdd(keep(got.dlq))
      ctx:start()
      assert.is_true(wait_for(function()
        return pending(to_file) >= 6 and pending(skipped) >= 6 and pending(to_topic) >= 6 and
          dlq:kafka_stats().partitions > 0
      end))
      ctx:advance(1)
      assert.are.same({ 10, 20, 40, 60 }, sorted(got.file))
      assert.are.same(sorted({ { "k1", 1 }, { "k2", 2 }, { "k4", 4 }, { "k6", 6 } }), sorted(got.skip))
      assert.are.same({ 1, 2, 4, 6 }, sorted(got.topic))
      assert.are.equal(2, to_file:kafka_stats().rejected)
      assert.are.equal(2, skipped:kafka_stats().rejected)
      assert.are.equal(2, to_topic:kafka_stats().rejected)
      -- the file: one JSON line per rejected record, with its offset and the error
      local lines = {}
      for line in io.lines(file) do lines[#lines + 1] = line end
      os.remove(file)
      assert.are.equal(2, #lines)
      table.sort(lines)
      assert.truthy(lines[1]:match('"topic":"dec","partition":%d,"offset":%d+,'))
      assert.truthy(lines[1]:find('"key":"k5","value":"","error":"', 1, true))
      assert.truthy(lines[1]:find("not a number: ''", 1, true))
      assert.truthy(lines[2]:find('"key":"k3","value":"oops"', 1, true))
      -- the topic: the record with its origin and the error in headers
      assert.is_true(wait_for(function() return pending(dlq) >= 2 end))
      ctx:advance(1)
      assert.are.equal(2, #got.dlq)
      sorted(got.dlq, function(t) return t.key end)
      assert.are.equal("k3", got.dlq[1].key)
      assert.are.equal("oops", got.dlq[1].value)
      local h = {}
      for _, kv in ipairs(got.dlq[1].headers) do h[kv.key] = kv.value end
      assert.are.equal("dec", h["dstream.topic"])
      assert.truthy(h["dstream.offset"]:match("^%d+$"))
      assert.truthy(h["dstream.error"]:find("not a number: 'oops'", 1, true))
    end)
  end)

  it("decode with on_error = \"fail\" fails the batch, naming the topic, partition and offset", function()
    produce("rate", { "bad record" })
    with_ctx(manual { max_task_attempts = 1 }, function(ctx)
      local s = ctx:kafka_stream { brokers = B, topic = "rate", group = "g-fail", start = "earliest",
        decode = function(v) return assert(tonumber(v), "not a number") end }
      s:foreach_rdd(function(rdd) rdd:count() end)
      ctx:start()
      assert.is_true(wait_for(function() return pending(s) >= 1 end))
      local ok, err = pcall(ctx.advance, ctx, 1)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("kafka_stream decode rejected rate [0] offset 0: ", 1, true))
      assert.truthy(tostring(err):find("not a number", 1, true))
      -- the failed batch was not committed
      local c = kafka.committed { brokers = B, group = "g-fail", topic = "rate" }
      assert.are.equal(-1, c[0])
    end)
  end)

  it("max_rate_per_partition caps every batch; explicit positions start where they say", function()
    local values = {}
    for i = 1, 45 do values[i] = tostring(i) end
    produce("rate", values) -- after the "bad record" of the previous test: offsets 1 .. 45
    with_ctx(manual(), function(ctx)
      local limited = ctx:kafka_stream { brokers = B, topic = "rate", group = "g-rate", start = "earliest",
        max_rate_per_partition = 10 }
      local placed = ctx:kafka_stream { brokers = B, topic = "rate", group = "g-pos",
        positions = { { topic = "rate", partition = 0, offset = 40 } } }
      local sizes, seen, from_40 = {}, {}, {}
      limited:foreach_rdd(function(rdd)
        local vals = rdd:collect()
        sizes[#sizes + 1] = #vals
        for _, v in ipairs(vals) do seen[#seen + 1] = v end
      end)
      placed:foreach_rdd(function(rdd)
        for _, v in ipairs(rdd:collect()) do from_40[#from_40 + 1] = v end
      end)
      ctx:start()
      for _ = 1, 5 do
        assert.is_true(wait_for(function()
          return pending(limited) >= math.min(10, 46 - #seen) and pending(placed) + #from_40 >= 6
        end))
        ctx:advance(1)
      end
      assert.are.same({ 10, 10, 10, 10, 6 }, sizes)
      local want = { "bad record" }
      for i = 1, 45 do want[#want + 1] = tostring(i) end
      assert.are.same(want, seen) -- one partition: in offset order, none lost or doubled
      assert.are.same({ "40", "41", "42", "43", "44", "45" }, from_40)
      assert.are.same({ { topic = "rate", partition = 0, offset = 46 } }, placed:positions())
    end)
  end)

  it("to_kafka writes every record, idempotent or in one transaction per batch", function()
    local values = {}
    for i = 1, 90 do values[i] = "r" .. i end
    produce("input", values)
    with_ctx(manual { workers = 3 }, function(ctx)
      local s = ctx:kafka_stream { brokers = B, topic = "input", group = "g-sink", start = "earliest" }
      s:map(function(v) return v, #v end):to_kafka { brokers = B, topic = "out1" }
      s:to_kafka { brokers = B, topic = "out2", exactly_once = true, key = function(v) return v:sub(1, 2) end }
      ctx:start()
      assert.is_true(wait_for(function() return pending(s) >= 90 end))
      ctx:advance(2)
      assert.is_true(wait_for(function()
        local c, sum = kafka.committed { brokers = B, group = "g-sink", topic = "input" }, 0
        for p = 0, 2 do sum = sum + math.max(0, c[p]) end -- -1: a partition without data
        return sum == 90
      end))
    end)
    with_ctx(manual(), function(ctx)
      local o1 = ctx:kafka_stream { brokers = B, topic = "out1", group = "g-read1", start = "earliest", with_key = true }
      local o2 = ctx:kafka_stream { brokers = B, topic = "out2", group = "g-read2", start = "earliest", with_key = true }
      local got1, got2 = {}, {}
      o1:foreach_rdd(function(rdd) for _, kv in ipairs(rdd:collect()) do got1[#got1 + 1] = kv end end)
      o2:foreach_rdd(function(rdd) for _, kv in ipairs(rdd:collect()) do got2[#got2 + 1] = kv end end)
      ctx:start()
      assert.is_true(wait_for(function() return pending(o1) >= 90 and pending(o2) >= 90 end))
      ctx:advance(1)
      local want1, want2 = {}, {}
      for i, v in ipairs(values) do
        want1[i] = { v, tostring(#v) }
        want2[i] = { v:sub(1, 2), v }
      end
      assert.are.same(sorted(want1), sorted(got1))
      assert.are.same(sorted(want2), sorted(got2))
    end)
  end)

  it("a producer's first message to a topic it has not written yet is delivered at once after prepare", function()
    mock:create_topic("first1", 1)
    mock:create_topic("first2", 1)
    local p, now_ms = kafka.producer { brokers = B }, require("dstream.core").now_ms
    local function flush_ms(topic)
      p:mark()
      assert(p:send(topic, "x"))
      local t0 = now_ms()
      assert(p:flush(10000))
      return now_ms() - t0
    end
    flush_ms("first1") -- (connected, the topics then known are ready)
    assert(p:prepare("first2"))
    local ms = flush_ms("first2") -- 1 s without prepare
    p:close()
    assert.is_true(ms < 300, string.format("the first flush to first2 took %.0f ms", ms))
  end)

  it("to_kafka: a worker's producer writing two topics is quick from the first batch", function()
    mock:create_topic("two1", 1)
    mock:create_topic("two2", 1)
    local slowest = 0 -- ms, a stage's longest task
    with_ctx(manual { workers = 1 }, function(ctx)
      local s = ctx:queue_stream({ { "a", "b" } })
      s:to_kafka { brokers = B, topic = "two1" } -- one producer (same brokers and conf) for both
      s:to_kafka { brokers = B, topic = "two2" }
      ctx:on_batch_completed(function(b)
        for _, st in ipairs(b.stages or {}) do slowest = math.max(slowest, st.task_ms / st.tasks) end
      end)
      ctx:start()
      ctx:advance(1)
    end)
    local r = require("dstream.core").kafka_reader { brokers = B }
    assert.are.same({ 2, 2 }, { select(2, r:watermarks("two1", 0, 5000)), select(2, r:watermarks("two2", 0, 5000)) })
    -- (the first flush to two2 took 1 s before the producer asked for its metadata up front)
    assert.is_true(slowest < 400, string.format("a task took %.0f ms", slowest))
  end)

  it("to_kafka: messages that cannot be delivered fail the batch instead of being dropped", function()
    with_ctx(manual { max_task_attempts = 2 }, function(ctx)
      ctx:queue_stream({ { "a", "b", "c" } }):to_kafka { brokers = B, topic = "out1", timeout = "1s" }
      ctx:start()
      mock:broker_down(-1)
      local ok, err = pcall(ctx.advance, ctx, 1)
      mock:broker_up(-1)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("to_kafka: ", 1, true))
      assert.truthy(tostring(err):find("not delivered", 1, true))
    end)
  end)

  it("a broker down and back up: the stream stalls, then resumes with nothing lost or doubled", function()
    local m = kafka.mock_cluster { brokers = 3, topics = { t = 6 } }
    local p = kafka.producer { brokers = m:bootstrap() }
    local ok, err = pcall(function()
      for i = 1, 300 do assert(p:send("t", tostring(i), "k" .. i)) end
      assert(p:flush(10000))
      with_ctx(manual(), function(ctx)
        local s = ctx:kafka_stream { brokers = m:bootstrap(), topic = "t", group = "g-down", start = "earliest" }
        local count, seen = 0, {}
        s:foreach_rdd(function(rdd)
          for _, v in ipairs(rdd:collect()) do
            count = count + 1
            seen[v] = (seen[v] or 0) + 1
          end
        end)
        ctx:start()
        assert.is_true(wait_for(function() return pending(s) >= 300 end))
        ctx:advance(1)
        assert.are.equal(300, count)
        m:broker_down(2)
        -- queued by the producer; the partitions led by broker 2 wait for it
        for i = 301, 600 do assert(p:send("t", tostring(i), "k" .. i)) end
        for _ = 1, 6 do
          sleep_ms(300)
          ctx:advance(1)
        end
        assert.is_true(count < 600)
        assert.is_true(s:kafka_stats().errors > 0)
        m:broker_up(2)
        assert(p:flush(20000))
        assert.is_true(wait_for(function() return count + pending(s) >= 600 end, 30))
        ctx:advance(2)
        assert.are.equal(600, count)
        for i = 1, 600 do assert.are.equal(1, seen[tostring(i)]) end
      end)
    end)
    p:close()
    m:close()
    if not ok then error(err, 0) end
  end)

  it("checks its options on the user's line", function()
    local ctx = manual()
    local function err_of(f)
      local ok, e = pcall(f)
      assert.is_false(ok)
      return tostring(e)
    end
    local e = err_of(function() ctx:kafka_stream { brokers = B, topics = { "x" }, strat = "earliest" } end)
    assert.truthy(e:find("kafka_spec.lua:%d+: kafka_stream: unknown option 'strat'"))
    e = err_of(function() ctx:kafka_stream { brokers = B, topics = {} } end)
    assert.truthy(e:find("kafka_spec.lua:%d+: kafka_stream: topics must be a list"))
    e = err_of(function() ctx:kafka_stream { brokers = B, topic = "x", start = "beginning" } end)
    assert.truthy(e:find("start must be \"earliest\" or \"latest\"", 1, true))
    e = err_of(function() ctx:kafka_stream { brokers = B, topic = "x", assign = "manual" } end)
    assert.truthy(e:find("kafka_spec.lua:%d+: kafka_stream: assign must be \"all\"", 1))
    e = err_of(function() ctx:kafka_stream { brokers = B, topic = "x", positions = { { topic = "y", partition = 0, offset = 1 } } } end)
    assert.truthy(e:find("kafka_spec.lua:%d+: set_positions: entry 1 names topic y, which this stream does not read %(x%)"), e)
    e = err_of(function() ctx:kafka_stream { brokers = B, topic = "x", positions = { { topic = "x", partition = 0, offset = -2 } } } end)
    assert.truthy(e:find("kafka_spec.lua:%d+: set_positions: entry 1: partition and offset must be whole numbers"), e)
    e = err_of(function() ctx:kafka_stream { brokers = B, topic = "x", with_key = true, with_meta = true } end)
    assert.truthy(e:find("exclude each other", 1, true))
    e = err_of(function() ctx:kafka_stream { brokers = B, topic = "x", with_key = "yes" } end)
    assert.truthy(e:find("kafka_spec.lua:%d+: kafka_stream: with_key must be true or false, got string yes"), e)
    e = err_of(function() ctx:kafka_stream { brokers = B, topic = "x", on_error = "dead_letter" } end)
    assert.truthy(e:find("needs dead_letter = { file = path } or { topic = name }", 1, true))
    e = err_of(function() ctx:kafka_stream { topic = "x" } end)
    assert.truthy(e:find("brokers must be", 1, true))
    local s = ctx:queue_stream({})
    e = err_of(function() s:to_kafka { brokers = B } end)
    assert.truthy(e:find("kafka_spec.lua:%d+: to_kafka: topic must be a topic name"))
    e = err_of(function() s:to_kafka { brokers = B, topic = "t", key = "k" } end)
    assert.truthy(e:find("key must be a function", 1, true))
    e = err_of(function() s:to_kafka { brokers = B, topic = "t", exactly_once = "yes" } end)
    assert.truthy(e:find("kafka_spec.lua:%d+: to_kafka: exactly_once must be true or false"), e)
    ctx:stop()
  end)

  it("cluster mode: checks its options, refuses keyed state, and joins group APP cooperatively", function()
    local ctx = dstream.context { batch = "1s", clock = "manual", workers = 1, cluster = "spec-app" }
    local function err_of(f)
      local ok, e = pcall(f)
      assert.is_false(ok)
      return tostring(e)
    end
    local e = err_of(function() ctx:kafka_stream { brokers = B, topic = "clu", group = "other" } end)
    assert.truthy(e:find("kafka_spec.lua:%d+: kafka_stream: in cluster mode every kafka_stream joins the cluster's consumer group \"spec%-app\""), e)
    e = err_of(function() ctx:kafka_stream { brokers = B, topic = "clu", assign = "all" } end)
    assert.truthy(e:find("assign = \"all\" cannot be used", 1, true), e)
    e = err_of(function() ctx:kafka_stream { brokers = B, topic = "clu", positions = {} } end)
    assert.truthy(e:find("positions cannot be used", 1, true), e)
    local s = ctx:kafka_stream { brokers = B, topic = "clu", start = "earliest" }
    assert.are.equal("spec-app", s.kafka.group)
    assert.are.equal("group", s.kafka.assign)
    assert.are.equal("cooperative-sticky", s.kafka.conf["partition.assignment.strategy"])
    local pairs_of = s:map(function(v) return v, 1 end)
    e = err_of(function()
      pairs_of:event_time(function() return 0 end, { late = "side" })
        :reduce_by_key_and_window(function(a, b) return a + b end, 2, 2)
    end)
    assert.truthy(e:find("kafka_spec.lua:%d+: reduce_by_key_and_window: late = \"side\" %(late_records%(%)%) is not supported by event%-time windows that fold their values in cluster mode"), e)
    e = err_of(function() ctx:driver_state("seen", function() return 1 end, function() end) end)
    assert.truthy(e:find("kafka_spec.lua:%d+: driver_state: cluster mode keeps only the state of update_state_by_key, map_with_state and the windows"), e)
    e = err_of(function()
      dstream.context { clock = "manual", workers = 1, cluster = "spec-app2" }:queue_stream({})
        :map(function(v) return v, 1 end):update_state_by_key(function(v, st) return st end)
    end)
    assert.truthy(e:find("kafka_spec.lua:%d+: update_state_by_key: cluster mode keeps keyed state in Kafka topics on the job's brokers"), e)
    e = err_of(function() dstream.context { cluster = 3 } end)
    assert.truthy(e:find("cluster: expected the name of the job's consumer group", 1, true), e)
    ctx:stop()
  end)

  -- The cluster tests below move partitions with a session timeout of 3 s for speed;
  -- spec/e2e/cluster_defaults.sh is their twin at librdkafka's defaults.
  it("cluster mode: two members of group APP share the partitions; each reads only its own", function()
    local values = {}
    for i = 1, 40 do values[i] = "r" .. i end
    local got, ctxs, streams = { {}, {} }, {}, {}
    for m = 1, 2 do
      local ctx = dstream.context { batch = "1s", clock = "manual", workers = 1, cluster = "spec-share" }
      local s = ctx:kafka_stream { brokers = B, topic = "clu", start = "earliest", with_meta = true,
        conf = { ["session.timeout.ms"] = 3000, ["heartbeat.interval.ms"] = 300 } }
      s:foreach_rdd(function(rdd)
        for _, r in ipairs(rdd:collect()) do got[m][#got[m] + 1] = r end
      end)
      ctxs[m], streams[m] = ctx, s
    end
    local function owned(m)
      local st = streams[m]:kafka_stats()
      local list = {}
      for _, o in ipairs(st.assigned or {}) do list[#list + 1] = o.partition end
      table.sort(list)
      return list, st.member_id
    end
    local ok, err = pcall(function()
      ctxs[1]:start()
      assert.is_true(wait_for(function() return #owned(1) == 4 end, 30))
      ctxs[2]:start()
      assert.is_true(wait_for(function() return #owned(1) == 2 and #owned(2) == 2 end, 30))
      local mine = { {}, {} }
      for m = 1, 2 do
        local list, member = owned(m)
        assert.is_string(member)
        for _, p in ipairs(list) do mine[m][p] = true end
      end
      assert.are_not.equal(select(2, owned(1)), select(2, owned(2)))
      for i, v in ipairs(values) do assert(producer:send("clu", v, nil, (i - 1) % 4)) end
      assert(producer:flush(10000))
      assert.is_true(wait_for(function()
        for m = 1, 2 do ctxs[m]:advance(1) end
        return #got[1] + #got[2] >= 40
      end, 30))
      local all = {}
      for m = 1, 2 do
        for _, r in ipairs(got[m]) do
          assert.is_true(mine[m][r.partition], "member " .. m .. " read partition " .. r.partition)
          all[#all + 1] = r.value
        end
      end
      assert.are.same(sorted(values), sorted(all))
    end)
    for m = 1, 2 do pcall(ctxs[m].stop, ctxs[m]) end
    if not ok then error(err, 0) end
  end)

  -- (Shortened session timeout, so that the hand-over after the stop is checked too; the
  -- next test is its twin at the defaults.)
  it("cluster mode: a member's graceful stop while a second member joins ends within 1.5 s", function()
    mock:create_topic("stopin", 2)
    mock:create_topic("spec-stop-n-repartition", 2)
    mock:create_topic("spec-stop-n-changelog", 2)
    local now_ms = require("dstream.core").now_ms
    local ctxs, streams, totals = {}, {}, { {}, {} }
    for m = 1, 2 do
      local ctx = dstream.context { batch = "1s", clock = "manual", workers = 1, cluster = "spec-stop" }
      local s = ctx:kafka_stream { brokers = B, topic = "stopin", start = "earliest",
        conf = { ["session.timeout.ms"] = 3000, ["heartbeat.interval.ms"] = 300 } }
      -- Two consumers of group spec-stop per member: the input's and the repartition topic's.
      s:map(function(w) return w, 1 end):update_state_by_key(function(values, n)
        n = n or 0
        for i = 1, #values do n = n + values[i] end
        return n
      end, { partitions = 2 }):name("n"):foreach_rdd(function(rdd)
        for _, kv in ipairs(rdd:collect()) do totals[m][kv[1]] = kv[2] end
      end)
      ctxs[m], streams[m] = ctx, s
    end
    local function owned(m) return #(streams[m]:kafka_stats().assigned or {}) end
    local ok, err = pcall(function()
      ctxs[1]:start()
      assert.is_true(wait_for(function() ctxs[1]:advance(1) return owned(1) == 2 end, 30))
      ctxs[2]:start() -- joins: the group rebalances
      assert.is_true(wait_for(function() return streams[2]:kafka_stats().member_id ~= nil end, 10))
      -- Member 1 stops while the group rebalances: the broker answers its consumers' leaves
      -- only at the rebalance's end, and they waited for it one after another (4.0 s).
      local t0 = now_ms()
      ctxs[1]:stop { graceful = true }
      local ms = now_ms() - t0
      assert.is_true(ms < 1500, string.format("the stop took %.0f ms", ms))
      -- The group goes on without it: member 2 owns every partition and counts what comes.
      assert.is_true(wait_for(function() ctxs[2]:advance(1) return owned(2) == 2 end, 30))
      produce("stopin", { "x", "y", "x" })
      assert.is_true(wait_for(function()
        ctxs[2]:advance(1)
        return totals[2].x == 2 and totals[2].y == 1
      end, 30))
    end)
    for m = 1, 2 do pcall(ctxs[m].stop, ctxs[m]) end
    if not ok then error(err, 0) end
  end)

  -- The twin of the test above at the consumer settings a user gets (no conf: 45 s session
  -- timeout, 3 s heartbeat). The embedded broker then holds the second member's join for
  -- 44 s (see the guide's limits), so the stop is timed while that join is pending, and the
  -- hand-over itself is left to spec/e2e/cluster_defaults.sh.
  it("cluster mode, at the default session timeout: a member's graceful stop while a second member joins ends within 1.5 s", function()
    mock:create_topic("stopdef", 2)
    mock:create_topic("spec-stopdef-n-repartition", 2)
    mock:create_topic("spec-stopdef-n-changelog", 2)
    local now_ms = require("dstream.core").now_ms
    local ctxs, streams = {}, {}
    for m = 1, 2 do
      local ctx = dstream.context { batch = "1s", clock = "manual", workers = 1, cluster = "spec-stopdef" }
      local s = ctx:kafka_stream { brokers = B, topic = "stopdef", start = "earliest" }
      s:map(function(w) return w, 1 end):update_state_by_key(function(values, n)
        n = n or 0
        for i = 1, #values do n = n + values[i] end
        return n
      end, { partitions = 2 }):name("n"):foreach_rdd(function() end)
      ctxs[m], streams[m] = ctx, s
    end
    local ok, err = pcall(function()
      ctxs[1]:start()
      -- Its two consumers (input and repartition) join within the group's first 3 s; one that
      -- misses them (once in CI, after a full kafka_spec run) makes a rebalance of its own,
      -- 44 s on the embedded broker: up to two of those before the stop under test.
      assert.is_true(wait_for(function()
        ctxs[1]:advance(1)
        return #(streams[1]:kafka_stats().assigned or {}) == 2
      end, 100))
      ctxs[2]:start() -- joins: the group rebalances (44 s on the embedded broker)
      sleep_ms(1000)
      local t0 = now_ms()
      ctxs[1]:stop { graceful = true }
      local ms = now_ms() - t0
      assert.is_true(ms < 1500, string.format("the stop took %.0f ms", ms))
    end)
    for m = 1, 2 do pcall(ctxs[m].stop, ctxs[m]) end
    if not ok then error(err, 0) end
  end)

  it("assign = \"group\": a process that starts and stops jobs of a group keeps none of their consumers", function()
    -- A leave the broker answers late (the embedded broker answers it when the rebalance in
    -- progress ends) is finished in the background: each stop left a consumer's threads and
    -- sockets behind for good, 4 threads per stop in a REPL session.
    local function threads()
      local f = assert(io.open("/proc/self/status"))
      local n = tonumber(f:read("*a"):match("\nThreads:%s*(%d+)"))
      f:close()
      return n
    end
    local function round()
      with_ctx(manual(), function(ctx)
        local s = ctx:kafka_stream { brokers = B, topic = "shared", group = "g-rounds", assign = "group" }
        s:foreach_rdd(function() end)
        ctx:start()
        sleep_ms(1000)
      end)
    end
    round()
    local base = threads()
    for _ = 1, 5 do round() end
    local now = threads()
    -- One consumer stopped in the middle of its first rebalance may stay (librdkafka cannot
    -- destroy it): at most one consumer's threads more than after the first round.
    assert.is_true(wait_for(function() now = threads() return now <= base + 6 end, 20),
      string.format("%d threads after 6 rounds, %d after the first", now, base))
  end)

  it("cluster mode: update_state_by_key and map_with_state keep their state in Kafka topics; a new start restores it; another partition count is refused", function()
    mock:create_topic("stin", 2)
    mock:create_topic("spec-st-counts-repartition", 3)
    mock:create_topic("spec-st-counts-changelog", 3)
    mock:create_topic("spec-st-seen-repartition", 2)
    mock:create_topic("spec-st-seen-changelog", 2)
    local slowest_send, slowest_stop = 0, 0 -- ms: a map side's task's longest, a stop's
    local function job(partitions)
      local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2, cluster = "spec-st" }
      local s = ctx:kafka_stream { brokers = B, topic = "stin", start = "earliest",
        conf = { ["session.timeout.ms"] = 3000, ["heartbeat.interval.ms"] = 300 } }
      local latest, seen = {}, {}
      local pairs_of = s:map(function(w) return w, 1 end)
      local counts = pairs_of:update_state_by_key(function(values, n)
        n = n or 0
        for i = 1, #values do n = n + values[i] end
        return n
      end, { partitions = partitions }):name("counts")
      counts:foreach_rdd(function(rdd)
        latest = {}
        for _, kv in ipairs(rdd:collect()) do latest[kv[1]] = kv[2] end
      end)
      -- map_with_state: each record's count so far (its key's state), a's from 10 on: the
      -- initial state seeds the cluster's first start only (a new start restores it).
      pairs_of:map_with_state {
        partitions = 2, initial = ctx:parallelize({ { "a", 10 }, { "z", 1 } }, 2, { pairs = true }),
        fn = function(k, v, state)
          local n = (state:get() or 0) + v
          state:update(n)
          return k .. "#" .. n
        end,
      }:name("seen"):foreach_rdd(function(rdd)
        for _, v in ipairs(rdd:collect()) do seen[#seen + 1] = v end
      end)
      -- The map sides' tasks (a few records to the repartition topics) are quick from the
      -- first batch on: each worker VM's producer writes the changelogs first (every batch's
      -- marker), and its first flush to the repartition topic took a second before the
      -- producer asked for a new topic's metadata up front (ds_kafka_producer_prepare).
      ctx:on_batch_completed(function(b)
        for _, st in ipairs(b.stages or {}) do
          if st.name:find("(repartition)", 1, true) then
            slowest_send = math.max(slowest_send, st.task_ms / st.tasks)
          end
        end
      end)
      return ctx, function() return latest end, function() return seen end
    end
    local metrics
    local function run(words, total)
      local ctx, latest, seen = job(3)
      local ok, err = pcall(function()
        ctx:start()
        produce("stin", words)
        assert.is_true(wait_for(function()
          ctx:advance(1)
          local t = 0
          for _, n in pairs(latest()) do t = t + n end
          return t >= total and #seen() >= #words
        end, 40))
        metrics = ctx:metrics():render()
      end)
      -- A graceful stop ends promptly: its three consumers (the input's and both repartition
      -- topics') of group spec-st leave together, none waiting for the end of a rebalance
      -- (one after another, each waited ~2 s when the group was rebalancing: 4.1 s).
      local t0 = require("dstream.core").now_ms()
      local stopped, serr = pcall(ctx.stop, ctx, { graceful = true })
      slowest_stop = math.max(slowest_stop, require("dstream.core").now_ms() - t0)
      if not ok then error(err, 0) end
      assert(stopped, serr)
      return latest(), sorted(seen())
    end
    local counts, seen = run({ "a", "b", "a", "c", "a" }, 5)
    assert.are.same({ a = 3, b = 1, c = 1 }, counts)
    assert.are.same({ "a#11", "a#12", "a#13", "b#1", "c#1" }, seen)
    -- A stale batch in a's changelog partition, as a process that had lost the partition would
    -- write it: begun at offset 0 (its marker's base), before the batches held. A restore
    -- ignores it.
    local enc = require("string.buffer").new()
    local part = require("dstream.worker.task").key_hash("a") % 3
    assert(producer:send("spec-st-counts-changelog", enc:reset():encode(100):tostring(),
      enc:reset():encode("a"):tostring(), part))
    assert(producer:send("spec-st-counts-changelog", "5 0", "\0", part))
    assert(producer:flush(10000))
    -- A new start (no checkpoint) restores every state partition from the changelogs.
    counts, seen = run({ "b", "d", "a" }, 8)
    assert.are.same({ a = 4, b = 2, c = 1, d = 1 }, counts)
    assert.are.same({ "a#14", "b#2", "d#1" }, seen)
    assert.is_true(slowest_send < 400, string.format("a map side's task took %.0f ms", slowest_send))
    assert.is_true(slowest_stop < 1500, string.format("a stop took %.0f ms", slowest_stop))
    -- /metrics: the state partitions owned, the restores (3, reading the changes of the first
    -- run, one per key and batch that changed it: 3 when its five words came in one batch, up
    -- to 5 when they were spread, plus the stale batch's key) and the rebalances of the group
    -- membership.
    assert.truthy(metrics:find('dstream_cluster_state_partitions{operator="counts"} 3', 1, true), metrics)
    assert.truthy(metrics:find('dstream_cluster_restores_total{operator="counts"} 3', 1, true), metrics)
    local restored = tonumber(metrics:match('dstream_cluster_restored_changes_total{operator="counts"} (%d+)'))
    assert.is_true(restored ~= nil and restored >= 4 and restored <= 6, metrics)
    assert.truthy(metrics:find('dstream_cluster_rebalances_total{input="update_state_by_key %(repartition%)"} [1-9]'), metrics)
    local ctx = job(2)
    local ok, err = pcall(ctx.start, ctx)
    pcall(ctx.stop, ctx)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("kafka_spec.lua:%d+: kafka_stream stin: update_state_by_key:"
      .. " topic spec%-st%-counts%-repartition has 3 partitions, but this start asks for 2 state partitions"), tostring(err))
  end)

  it("names every topic a stateful operator needs when the broker (the embedded one) cannot make them", function()
    local mock = kafka.mock_cluster { brokers = 1, topics = { tmiss_in = 2 } }
    local ctx = dstream.context { batch = "1s", clock = "manual", cluster = "spec-tmiss" }
    ctx:kafka_stream { brokers = mock:bootstrap(), topic = "tmiss_in" }
      :map(function(w) return w, 1 end)
      :update_state_by_key(function(v, n) return (n or 0) + #v end, { partitions = 3 }):name("counts")
      :foreach_rdd(function() end)
    local ok, err = pcall(ctx.start, ctx)
    pcall(ctx.stop, ctx)
    mock:close()
    assert.is_false(ok)
    -- Both topics at once: a user making only the one named would fail again at the next start.
    assert.truthy(tostring(err):find("kafka_spec.lua:%d+: kafka_stream tmiss_in: update_state_by_key: topic"
      .. " spec%-tmiss%-counts%-repartition does not exist and could not be created: .* needs the job's topics"
      .. " made first: spec%-tmiss%-counts%-repartition:3 spec%-tmiss%-counts%-changelog:3 on kafka%-mock's command"
      .. " line, or `topic spec%-tmiss%-counts%-repartition 3` and `topic spec%-tmiss%-counts%-changelog 3` on its"
      .. " standard input%)"), tostring(err))
  end)

  it("re-runs the batches logged after the checkpoint at the same offsets, and its position stays past them", function()
    -- Run 1 reads the topic in two batches and dies without a checkpoint of them (an abrupt
    -- stop: only the one at start). Run 2 re-runs both with their times and records; its own
    -- batch 3, sealed while the re-runs were pending, takes nothing, and its checkpoint (every
    -- 3 s here) must still be past the re-run records: run 3 reads nothing again.
    local dir = H.tmpdir()
    local values = {}
    for i = 1, 300 do values[i] = "r" .. i end
    produce("rerun", values, function(i) return "k" .. i end)
    local seen = {} -- [time] = { sorted records of each run of the batch }
    local function build()
      local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2, checkpoint = dir,
        checkpoint_interval = "3s" }
      local s = ctx:kafka_stream { brokers = B, topics = { "rerun" }, group = "rerun", start = "earliest",
        max_rate_per_partition = 100 }
      s:foreach_rdd(function(rdd, time)
        seen[time] = seen[time] or {}
        table.insert(seen[time], sorted(rdd:collect()))
      end)
      return ctx, s
    end
    local ctx, s = build()
    with_ctx(ctx, function()
      ctx:start()
      assert.is_true(wait_for(function() return pending(s) >= 300 end))
      ctx:advance(2)
      ctx:stop() -- abrupt: no checkpoint of batches 1 and 2
    end)
    ctx = build()
    with_ctx(ctx, function()
      ctx:start()
      ctx:advance(1) -- batch 3, a checkpoint
      ctx:stop()
    end)
    ctx = build()
    with_ctx(ctx, function()
      ctx:start()
      assert.are.equal(3000, ctx.recovered_from)
      sleep_ms(500)
      ctx:advance(2)
      ctx:stop { graceful = true }
    end)
    H.rmdir(dir)
    local all = {}
    for time, runs in pairs(seen) do
      for i = 2, #runs do assert.are.same(runs[1], runs[i], "batch " .. time .. " re-run with other records") end
      for _, r in ipairs(runs[1]) do all[#all + 1] = r end
    end
    assert.are.equal(2, #seen[1000], "batch 1 s ran twice")
    assert.are.same(sorted(values), sorted(all))
  end)
end)

describe("kafka errors that name what went wrong (issue 15)", function()
  local mock, B, producer

  setup(function()
    mock = kafka.mock_cluster { brokers = 1, topics = { bin = 1, quoted = 1 } }
    B = mock:bootstrap()
    producer = kafka.producer { brokers = B }
  end)

  teardown(function()
    if producer then producer:close() end
    if mock then mock:close() end
  end)

  local function hex(s)
    return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
  end

  it("dead-letter lines are valid JSON for any key and value bytes, and give them back", function()
    -- Not UTF-8 (a lone 0xff, a cut sequence, a surrogate, latin-1), and UTF-8 text.
    local records = {
      { "k\255\254", "v\0\1\128bin" }, { "caf\233", "\237\160\128" },
      { "clé", "naïve \"text\"\n" }, { "\226\130", "ok" },
    }
    for _, r in ipairs(records) do assert(producer:send("bin", r[2], r[1])) end
    assert(producer:flush(10000))
    local file = os.tmpname()
    os.remove(file)
    with_ctx(manual(), function(ctx)
      local s = ctx:kafka_stream { brokers = B, topic = "bin", group = "g-bin", start = "earliest",
        decode = function() error("rejected \255") end, dead_letter = { file = file } }
      s:foreach_rdd(function(rdd) rdd:count() end)
      ctx:start()
      assert.is_true(wait_for(function() return pending(s) >= #records end))
      ctx:advance(1)
    end)
    -- Python's json module reads the file as strict UTF-8 and rebuilds each key and value's
    -- bytes: "key" as UTF-8 text, or "key_base64".
    local py = [[
import base64, json, sys
for line in open(sys.argv[1], encoding="utf-8", errors="strict"):
    d = json.loads(line)
    out = []
    for f in ("key", "value"):
        b = base64.b64decode(d[f + "_base64"]) if f + "_base64" in d else d[f].encode("utf-8")
        out.append(b.hex())
    print(d["offset"], out[0], out[1], "rejected \u00ff" in d["error"])
]]
    local pyfile = os.tmpname()
    local f = assert(io.open(pyfile, "w"))
    f:write(py)
    f:close()
    local pipe = assert(io.popen("python3 " .. pyfile .. " " .. file .. " 2>&1"))
    local got = pipe:read("*a")
    pipe:close()
    os.remove(pyfile)
    os.remove(file)
    local want = {}
    for i, r in ipairs(records) do
      want[#want + 1] = string.format("%d %s %s True", i - 1, hex(r[1]), hex(r[2]))
    end
    assert.are.equal(table.concat(want, "\n") .. "\n", got)
  end)

  it("a failing record is quoted as topic, partition, offset, key and value, not a frame", function()
    assert(producer:send("quoted", "hello", "ev"))
    assert(producer:flush(10000))
    with_ctx(manual { max_task_attempts = 1 }, function(ctx)
      local s = ctx:kafka_stream { brokers = B, topic = "quoted", group = "g-q", start = "earliest",
        with_key = true }
      s:map(function(k, v) error("boom on " .. v) end):foreach_rdd(function(rdd) rdd:count() end)
      ctx:start()
      assert.is_true(wait_for(function() return pending(s) >= 1 end))
      local ok, err = pcall(ctx.advance, ctx, 1)
      assert.is_false(ok)
      err = tostring(err)
      assert.truthy(err:find('record kafka quoted [0] offset 0, key "ev", value "hello": ', 1, true), err)
      assert.truthy(err:find("boom on hello", 1, true), err)
      assert.is_falsy(err:find("\\0", 1, true), err)
    end)
  end)

  -- A group-assigned stream that the group gives nothing reads nothing and would say nothing
  -- else: the warning after two session timeouts and the first join's 3 s (93 s at the default
  -- session.timeout.ms, 15 s at the shortest the brokers allow, used here in a job of its own
  -- whose stderr is read: the two of a group on a one-partition topic are one member too
  -- many, and a topic the group cannot see is assigned to nobody; a healthy group is not
  -- warned about). The same job tells, at --log-level info, that a second run in a group
  -- starts at the group's committed offsets (so reads nothing here), whatever `start` says.
  it("assign = \"group\": a stream the group has given no partition for long is warned about, naming the group;"
      .. " one that starts at its group's committed offsets says so at info", function()
    -- (6 s sessions here, for speed; spec/e2e/kafka_defaults.sh is the twin at the defaults)
    assert.are.equal(93000, require("dstream.sources.kafka_assignment").limit_ms({}))
    -- (busted's pending, which this file's pending(s) hides)
    if H.sanitizer_build() then return getfenv(1).pending("an 18 s job: release build only") end
    local dir = H.tmpdir()
    local script = dir .. "/no_assignment.lua"
    H.write_file(script, [[
local dstream = require("dstream")
local kafka = require("dstream.kafka")
local mock = kafka.mock_cluster { brokers = 1, topics = { absent = 2, present = 2, one = 1, again = 2 } }
mock:topic_error("absent", 3) -- the group sees no such topic
local producer = kafka.producer { brokers = mock:bootstrap() }
for _, v in ipairs({ "a", "b", "c" }) do assert(producer:send("again", v)) end
assert(producer:flush(5000))
-- A first run in group g-again reads the topic and commits: the second starts at the end.
local function read_again(ctx)
  local n = 0
  ctx:kafka_stream { brokers = mock:bootstrap(), topic = "again", group = "g-again", start = "earliest" }
    :foreach_rdd(function(rdd) n = n + rdd:count() end)
  return function() return n end
end
local first = dstream.context { batch = "250ms", workers = 1 }
local first_read = read_again(first)
first:start()
first:await_termination(1.5)
first:stop()
io.stderr:write("first run done\n")
local conf = { ["session.timeout.ms"] = 6000, ["heartbeat.interval.ms"] = 2000 }
local ctx = dstream.context { batch = "500ms", workers = 1 }
local function stream(topic, group, name)
  local s = ctx:kafka_stream { brokers = mock:bootstrap(), topic = topic, group = group, assign = "group",
    conf = conf, name = name }
  s:foreach_rdd(function() end)
  return s
end
local a, p = stream("absent", "g-absent"), stream("present", "g-present")
local o1, o2 = stream("one", "g-one", "one-a"), stream("one", "g-one", "one-b")
local second_read = read_again(ctx)
ctx:start()
ctx:await_termination(17)
print(string.format("partitions: absent %d present %d one %d", a:kafka_stats().partitions,
  p:kafka_stats().partitions, o1:kafka_stats().partitions + o2:kafka_stats().partitions))
print(string.format("again: first run %d, second run %d", first_read(), second_read()))
ctx:stop()
mock:close()
]])
    local bin = os.getenv("DSTREAM_BIN") or "build/dstream"
    local pipe = assert(io.popen(H.quote(bin) .. " --log-level info " .. H.quote(script) .. " 2>&1"))
    local out = pipe:read("*a")
    pipe:close()
    H.rmdir(dir)
    assert.truthy(out:find("partitions: absent 0 present 2 one 1", 1, true), out)
    local function warned(name, group)
      local _, n = out:gsub("kafka_stream " .. name .. ": group " .. group
        .. " has assigned no partition to this process for 1%d s", "")
      return n
    end
    assert.are.equal(1, warned("absent", "g%-absent"), out)
    assert.are.equal(1, warned("one%-a", "g%-one") + warned("one%-b", "g%-one"), out)
    assert.are.equal(0, warned("present", "g%-present"), out)
    assert.truthy(out:find("Check that the topics exist", 1, true), out)
    -- At --log-level info, a stream that starts at its group's committed offsets says so: a
    -- second run in the same group reads nothing, start = "earliest" notwithstanding.
    assert.truthy(out:find("again: first run 3, second run 0", 1, true), out)
    local before, after = out:match("^(.*)first run done\n(.*)$")
    assert.is_falsy(before:find("start at group g-again", 1, true), out)
    assert.truthy(after:find("2 of 2 partition(s) start at group g-again's committed offsets (start = earliest", 1, true), out)
  end)
end)
