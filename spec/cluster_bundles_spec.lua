-- Cluster mode's repartition topic carries bundles (dstream.worker.bundles): a map task sends
-- one message per state partition it has pairs for, not one per key, and splits a bundle that
-- passes 512 KiB; an event-time window's largest timestamp per task rides in the same bundles.
-- The messages are counted and measured with kcat, a Kafka client nobody here
-- wrote, against an embedded broker in this process; the state must still hold every pair
-- (counted here in plain Lua). The first cluster join takes the embedded broker about 3 s.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local dstream = require("dstream")
local kafka = require("dstream.kafka")
local bundles = require("dstream.worker.bundles")
local sleep_ms, wait_for = H.sleep_ms, H.wait_for

-- One member per test, with a session timeout of 3 s. (At librdkafka's 45 s, a loaded machine
-- sometimes made the member's second consumer miss the group's first join, and each round of
-- the rebalance that followed waited 44 s on the embedded broker: CI failed once after 100 s.)
-- The twin at the defaults is this file run by spec/e2e/cluster_bundles_defaults.sh with
-- BUNDLES_AT_DEFAULTS=1: no consumer conf, and waits that allow several of those rounds (it runs
-- beside the e2e lanes, where waiting costs nothing).
local AT_DEFAULTS = os.getenv("BUNDLES_AT_DEFAULTS") == "1"
local CONF = not AT_DEFAULTS and { ["session.timeout.ms"] = 3000, ["heartbeat.interval.ms"] = 300 } or nil
local JOIN_S = AT_DEFAULTS and 400 or 100 -- how long a member may take to be given its partitions

describe("cluster mode's repartition bundles", function()
  local mock, B, producer

  setup(function()
    mock = kafka.mock_cluster { brokers = 1, topics = { bu_in = 1, ["spec-bu-counts-repartition"] = 3,
      ["spec-bu-counts-changelog"] = 3, bs_in = 1, ["spec-bs-sizes-repartition"] = 1,
      ["spec-bs-sizes-changelog"] = 1, be_in = 1, ["spec-be-events-repartition"] = 3,
      ["spec-be-events-changelog"] = 3 } }
    B = mock:bootstrap()
    producer = kafka.producer { brokers = B }
  end)

  teardown(function()
    if producer then producer:close() end
    if mock then mock:close() end
  end)

  local function produce(topic, values)
    for _, v in ipairs(values) do assert(producer:send(topic, v)) end
    assert(producer:flush(10000))
  end

  -- The messages of `topic` as kcat reads them: a list of { partition, bytes }.
  local function messages(topic)
    local p = assert(io.popen(string.format("kcat -b %s -C -t %s -e -q -f '%%p %%S\\n' 2>&1", B, topic)))
    local out = p:read("*a")
    p:close()
    local list = {}
    for line in out:gmatch("[^\n]+") do
      local part, bytes = line:match("^(%d+) (%d+)$")
      assert(part, "kcat: " .. out)
      list[#list + 1] = { tonumber(part), tonumber(bytes) }
    end
    return list
  end

  -- A member of cluster `app` reading `topic` (one partition): pair(line) maps each line to a
  -- pair, and update_state_by_key named `name` over n state partitions folds each key's values
  -- with fold(values, state).
  local function member(app, topic, name, n, pair, fold)
    local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2, cluster = app }
    local s = ctx:kafka_stream { brokers = B, topic = topic, start = "earliest", conf = CONF }
    local latest = {}
    s:map(pair):update_state_by_key(fold, { partitions = n }):name(name):foreach_rdd(function(rdd)
      latest = {}
      for _, kv in ipairs(rdd:collect()) do latest[kv[1]] = kv[2] end
    end)
    return ctx, s, function() return latest end
  end

  -- Runs batches until have() holds: the first once every record of `total` is pending, so
  -- that one map task reads them all. The member's two consumers (input and repartition) join
  -- together, within the embedded broker's 3 s initial delay; on a loaded machine the second
  -- sometimes misses it, and its own rebalance waits the session timeout less 1 s (the wait
  -- ends as soon as have() holds).
  local function run(ctx, s, total, have)
    assert.is_true(wait_for(function() return (s:kafka_stats().pending or 0) >= total end, JOIN_S))
    assert.is_true(wait_for(function()
      ctx:advance(1)
      return have()
    end, JOIN_S))
  end

  it("a batch of 2000 distinct keys is one message per state partition, and every key is counted", function()
    local ctx, s, latest = member("spec-bu", "bu_in", "counts", 3, function(w) return w, 1 end,
      function(values, n)
        n = n or 0
        for i = 1, #values do n = n + values[i] end
        return n
      end)
    -- Batch 1: keys w1..w2000 once each; batch 2: w1..w1000 again and w2001..w2500.
    local first, second, want = {}, {}, {}
    for i = 1, 2000 do first[i] = "w" .. i end
    for i = 1, 1000 do second[#second + 1] = "w" .. i end
    for i = 2001, 2500 do second[#second + 1] = "w" .. i end
    for _, w in ipairs(first) do want[w] = (want[w] or 0) + 1 end
    for _, w in ipairs(second) do want[w] = (want[w] or 0) + 1 end
    local function matches(expected)
      return function()
        local got = latest()
        for k, v in pairs(expected) do if got[k] ~= v then return false end end
        return true
      end
    end
    local ok, err = pcall(function()
      ctx:start()
      produce("bu_in", first)
      local after_first = {}
      for _, w in ipairs(first) do after_first[w] = 1 end
      run(ctx, s, #first, matches(after_first))
      local msgs = messages("spec-bu-counts-repartition")
      -- One map task, three state partitions, each with some of the 2000 keys: three messages
      -- (one per key would be 2000).
      assert.are.equal(3, #msgs, "messages in the repartition topic after a batch of 2000 keys")
      local parts = {}
      for _, m in ipairs(msgs) do parts[m[1]] = (parts[m[1]] or 0) + 1 end
      assert.are.same({ [0] = 1, 1, 1 }, parts)
      produce("bu_in", second)
      run(ctx, s, #second, matches(want))
      -- The second batch's bundles are messages of their own: three more.
      assert.are.equal(6, #messages("spec-bu-counts-repartition"))
      -- Yet the keyed stage's input counts the 3500 pairs it applied, not the 6 messages: in
      -- /api/batches (per batch, and its stage's records in) and in /metrics.
      local status, _, body = ctx.monitor:handle("GET", "/api/batches", "n=100", "127.0.0.1")
      assert.are.equal(200, status)
      local from_input, from_stage = 0, 0
      for _, b in ipairs(require("cjson").decode(body)) do
        for _, src in ipairs(b.sources) do
          if src.name:find("(repartition)", 1, true) then from_input = from_input + src.records end
        end
        for _, st in ipairs(b.stages) do
          if st.name == "update_state_by_key" then from_stage = from_stage + st.records_in end
        end
      end
      assert.are.equal(#first + #second, from_input)
      assert.are.equal(#first + #second, from_stage)
      local metrics = select(3, ctx.monitor:handle("GET", "/metrics", "", "127.0.0.1"))
      local line = metrics:match('\n(dstream_source_records_total{[^\n]*%(repartition%)[^\n]*)')
      assert.is_truthy(line, metrics)
      assert.are.equal(#first + #second, tonumber(line:match(" (%d+)$")), line)
    end)
    pcall(ctx.stop, ctx)
    if not ok then error(err, 0) end
    local got, keys = latest(), 0
    for k, v in pairs(got) do
      keys = keys + 1
      assert.are.equal(want[k], v, k)
    end
    assert.are.equal(2500, keys)
  end)

  it("a bundle that passes 512 KiB is split: every message stays below the broker's limit", function()
    local VALUE = 100000 -- bytes per value: 30 values are about 3 MB, six bundles or so
    local ctx, s, latest = member("spec-bs", "bs_in", "sizes", 1,
      function(k) return k, string.rep("v", VALUE) end,
      function(values, n)
        n = n or 0
        for i = 1, #values do n = n + #values[i] end
        return n
      end)
    local keys = {}
    for i = 1, 30 do keys[i] = "k" .. i end
    local ok, err = pcall(function()
      ctx:start()
      produce("bs_in", keys)
      run(ctx, s, #keys, function()
        local got = latest()
        for _, k in ipairs(keys) do if got[k] ~= VALUE then return false end end
        return true
      end)
    end)
    pcall(ctx.stop, ctx)
    if not ok then error(err, 0) end
    local msgs, total = messages("spec-bs-sizes-repartition"), 0
    assert.is_true(#msgs >= 5 and #msgs <= 7, #msgs .. " messages")
    for i, m in ipairs(msgs) do
      total = total + m[2]
      assert.is_true(m[2] < bundles.LIMIT + VALUE + 100, "message " .. i .. ": " .. m[2] .. " bytes")
      -- every bundle but the last was sent because it reached the limit
      if i < #msgs then assert.is_true(m[2] >= bundles.LIMIT, "message " .. i .. ": " .. m[2] .. " bytes") end
    end
    assert.is_true(total >= 30 * VALUE and total < 30 * (VALUE + 100), total .. " bytes in all")
  end)

  it("an event-time window's map side puts its largest timestamp in each partition's bundle", function()
    -- 600 records of 300 keys, all in the window [0, 4 s): each partition's bundle holds its
    -- keys' partial counts and the task's largest timestamp (key nil), from which the keyed
    -- stage moves its watermark: one message per state partition (303 before bundles).
    local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2, cluster = "spec-be" }
    local s = ctx:kafka_stream { brokers = B, topic = "be_in", start = "earliest", conf = CONF }
    local latest = {}
    s:map(function(line)
      local k, ts = line:match("^(%S+) (%d+)$")
      return k, tonumber(ts)
    end):event_time(function(_, ts) return ts end, { watermark = "30s", emit = "update" })
      :map_values(function() return 1 end)
      :reduce_by_key_and_window(function(a, b) return a + b end, "4s", "4s", { partitions = 3 })
      :name("events")
      :foreach_rdd(function(rdd)
        for _, kv in ipairs(rdd:collect()) do latest[kv[1] .. "@" .. kv[2].start] = kv[2].value end
      end)
    local lines = {}
    for i = 1, 600 do lines[i] = string.format("k%d %d", i % 300, 1000 + i) end
    local ok, err = pcall(function()
      ctx:start()
      produce("be_in", lines)
      run(ctx, s, #lines, function()
        for i = 0, 299 do if latest["k" .. i .. "@0"] ~= 2 then return false end end
        return true
      end)
    end)
    pcall(ctx.stop, ctx)
    if not ok then error(err, 0) end
    local keys = 0
    for _ in pairs(latest) do keys = keys + 1 end
    assert.are.equal(300, keys) -- (every key in the one window, each counted twice)
    assert.are.equal(3, #messages("spec-be-events-repartition"))
  end)
end)
