-- Cluster mode's keyed state takes each input record once, also through a kill in the middle
-- of a batch's sends (issue 19): a member process (the dstream binary, spawned) is ended by the
-- test hook DSTREAM_TEST_EXIT_AFTER_SENDS while its map tasks send a batch's bundles on (a
-- per-batch reduce_by_key before update_state_by_key, so each bundle mixes the input
-- partitions); the member that gets its partitions next reads that batch's ranges again (the
-- plan the killed one committed) and its keyed stage skips the bundles it had of it. The
-- counts must equal a count in plain Lua, and /metrics must show the skipped entries; the same
-- with two kafka_streams unioned, the second getting records only after the kill. And two
-- member processes writing with to_kafka{ exactly_once = true } each use a transactional.id of
-- their own (the embedded broker does not fence producers, so the ids are read from the log).
-- A session timeout of 3 s for a fast move; the twins at the defaults are
-- spec/e2e/cluster_defaults.sh (kills at a random moment) and, for the window killed in its
-- output, spec/e2e/cluster_output_kill.sh.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")
local dstream = require("dstream")
local kafka = require("dstream.kafka")
local wait_for = H.wait_for
local ffi = require("ffi")
pcall(ffi.cdef, "int setenv(const char *name, const char *value, int overwrite); int unsetenv(const char *name);")

local CONF = { ["session.timeout.ms"] = 3000, ["heartbeat.interval.ms"] = 300 }
local BIN = os.getenv("DSTREAM_BIN") or "build/dstream"

-- The job both members run (the spawned one as a script, the other in this process), as a
-- chunk returning count_words(ctx, brokers, topics, conf): the lines of each topic of `topics`
-- (comma-separated: one kafka_stream each, unioned), words counted per batch, then in the
-- state (3 state partitions); returns the state stream.
local COUNT_WORDS = [[
return function(ctx, brokers, topics, conf)
  local text = require("dstream.text")
  local lines
  for topic in topics:gmatch("[^,]+") do
    local s = ctx:kafka_stream { brokers = brokers, topic = topic, start = "earliest",
      max_rate_per_partition = 80, conf = conf }
    lines = lines and lines:union(s) or s
  end
  return lines:flat_map(function(l) return text.words(l) end):map(function(w) return w, 1 end)
    :reduce_by_key(function(a, b) return a + b end)
    :update_state_by_key(function(values, n)
      n = n or 0
      for i = 1, #values do n = n + values[i] end
      return n
    end, { partitions = 3 }):name("counts")
end
]]
local count_words = assert(load(COUNT_WORDS))()

-- The spawned member's script: arg[1] the brokers, arg[2] the topics.
local JOB = "local count_words = (function() " .. COUNT_WORDS .. " end)()\n" .. [[
local ctx = require("dstream").context { batch = "500ms", workers = 2 }
count_words(ctx, arg[1], arg[2], { ["session.timeout.ms"] = "3000", ["heartbeat.interval.ms"] = "300" })
  :foreach_rdd(function() end)
ctx:start()
ctx:await_termination()
]]

-- A job writing each line to a topic in transactions (to_kafka{ exactly_once = true }).
local TXN_JOB = [[
local dstream = require("dstream")
local ctx = dstream.context { batch = "500ms", workers = 2 }
ctx:kafka_stream { brokers = arg[1], topic = "txn_in", start = "earliest",
  conf = { ["session.timeout.ms"] = "3000", ["heartbeat.interval.ms"] = "300" } }
  :to_kafka { brokers = arg[1], topic = "txn_out", exactly_once = true }
ctx:start()
ctx:await_termination()
]]

-- A windowed word count that kills itself (SIGKILL) at its k-th window, before writing it:
-- spec/e2e/jobs/cluster_window_kill.lua with its `fast` settings (that suite runs it at the
-- defaults).
local WINDOW_JOB = assert(io.open("spec/e2e/jobs/cluster_window_kill.lua")):read("*a")

-- The values of `topic` as kcat reads them.
local function topic_values(B, topic)
  local p = assert(io.popen(string.format("kcat -b %s -C -t %s -e -q -f '%%s\\n' 2>&1", B, topic)))
  local out = {}
  for line in p:read("*a"):gmatch("[^\n]+") do out[#out + 1] = line end
  p:close()
  return out
end

describe("cluster mode through a kill in the middle of a batch's sends", function()
  local mock, B, dir

  setup(function()
    mock = kafka.mock_cluster { brokers = 1, topics = { once_in = 2,
      ["spec-once-counts-repartition"] = 3, ["spec-once-counts-changelog"] = 3, txn_in = 2, txn_out = 1,
      two_a = 2, two_b = 1, ["spec-two-counts-repartition"] = 3, ["spec-two-counts-changelog"] = 3,
      win_in = 2, ["spec-win-windows-repartition"] = 3, ["spec-win-windows-changelog"] = 3 } }
    B = mock:bootstrap()
    dir = H.tmpdir()
  end)

  -- Starts a member process NAME of cluster `app_args` (the cluster's name, then options)
  -- running `job` with `env` set: DIR/NAME.pid, .out, .err, and .status once it ended.
  local function spawn(name, job, env, app_args, job_args)
    local file = dir .. "/" .. name .. ".lua"
    local f = assert(io.open(file, "w"))
    f:write(job)
    f:close()
    local base = dir .. "/" .. name
    os.execute(string.format("(sh -c \"echo \\$\\$ >%s.pid; exec env %s %s --cluster %s %s %s %s\" >%s.out 2>%s.err;"
      .. " echo $? >%s.status) &", base, env, H.quote(BIN), app_args, file, B, job_args or "", base, base, base))
  end

  -- Lines of words into `topic` (partition i % partitions), counted into `want`; returns how
  -- many words.
  local function produce(topic, lines, partitions, want)
    local producer, total = kafka.producer { brokers = B }, 0
    for i, l in ipairs(lines) do
      assert(producer:send(topic, l, nil, i % partitions))
      for w in l:gmatch("%S+") do
        want[w] = (want[w] or 0) + 1
        total = total + 1
      end
    end
    assert(producer:flush(10000))
    producer:close()
    return total
  end

  -- Member 1 of cluster `app` over `topics`: its tasks end the process after 9 bundles sent on
  -- in one worker (a few batches of 80 lines per partition in, with up to 6 bundles each).
  local function killed_member(app, topics)
    spawn(app, JOB, "DSTREAM_TEST_EXIT_AFTER_SENDS=9", app, topics)
    assert.is_true(wait_for(function()
      local s = io.open(dir .. "/" .. app .. ".status")
      if s then s:close() end
      return s ~= nil
    end, 60), "member 1 did not end")
    local err = io.open(dir .. "/" .. app .. ".err"):read("*a")
    assert.is_truthy(err:find("DSTREAM_TEST_EXIT_AFTER_SENDS: exiting after 9 bundles sent", 1, true), err)
    assert.are.equal("137", io.open(dir .. "/" .. app .. ".status"):read("*l"))
  end

  -- Member 2 of cluster `app`, in this process: it gets every partition once member 1's
  -- session timed out; its counts must be `want`'s (`total` words), and its state must have
  -- skipped entries as applied already. With `fail_after`, its workers' map tasks fail once
  -- after that many bundles sent (DSTREAM_TEST_FAIL_AFTER_SENDS): their retries send those
  -- bundles again.
  local function next_owner(app, topics, want, total, fail_after)
    if fail_after then ffi.C.setenv("DSTREAM_TEST_FAIL_AFTER_SENDS", tostring(fail_after), 1) end
    local ctx = dstream.context { batch = "500ms", clock = "manual", workers = 2, cluster = app }
    local state = count_words(ctx, B, topics, CONF)
    local counts = {}
    state:foreach_rdd(function(rdd)
      counts = {}
      for _, kv in ipairs(rdd:collect()) do counts[kv[1]] = kv[2] end
    end)
    local ok, e = pcall(function()
      ctx:start()
      ffi.C.unsetenv("DSTREAM_TEST_FAIL_AFTER_SENDS") -- (read as the workers start)
      -- The first batch once every input has records waiting (the group assigned them all and
      -- they were fetched): the plans read again, and new records of the other inputs, are
      -- there for it to take or leave.
      local inputs = {}
      for _, K in ipairs(require("dstream.sources.kafka").of_context(ctx)) do
        if not K.input.internal then inputs[#inputs + 1] = K end
      end
      assert.is_true(wait_for(function()
        for _, K in ipairs(inputs) do
          if (K:stats().pending or 0) == 0 then return false end
        end
        return true
      end, 60), "the inputs were not assigned and fetched")
      H.sleep_ms(1000)
      local function sum()
        local n = 0
        for _, c in pairs(counts) do n = n + c end
        return n
      end
      -- Until every word is in, and then a few batches more (a word counted twice would show).
      assert.is_true(wait_for(function()
        ctx:advance(1)
        return sum() >= total and #(state:kafka_stats().assigned or {}) == 3
      end, 90), "member 2 counted " .. sum() .. " of " .. total .. " words")
      for _ = 1, 4 do ctx:advance(1) end
      for w, n in pairs(want) do assert.are.equal(n, counts[w], w) end
      assert.are.equal(total, sum())
      local metrics = select(3, ctx.monitor:handle("GET", "/metrics", "", "127.0.0.1"))
      local skipped = tonumber(metrics:match('\ndstream_cluster_replayed_entries_total{operator="counts"} (%d+)'))
      assert.is_truthy(skipped and skipped > 0, metrics:match("\n(dstream_cluster_replayed[^\n]*)"))
    end)
    pcall(ctx.stop, ctx)
    if not ok then error(e, 0) end
  end

  teardown(function()
    if mock then mock:close() end
    if dir and not os.getenv("KEEP") then os.execute("rm -rf " .. H.quote(dir)) end
  end)

  it("counts every word once: the next owner reads the batch again (its tasks failing once after a send) and the state skips what it had", function()
    local want = {}
    local total = produce("once_in", H.random_lines(1200, 19), 2, want)
    killed_member("spec-once", "once_in")
    next_owner("spec-once", "once_in", want, total, 1)
  end)

  it("two streams unioned before the per-batch reduce: the batch read again holds nothing of the other", function()
    if H.sanitizer_build() then return pending("the C side is the first test's: release build only") end
    -- two_b gets its lines only once member 1 is dead: the next owner's first batch reads
    -- two_a's plan again, and two_b's new lines wait for the batch after it (mixed into it by
    -- the reduce, they would make its bundles other than the first run's, applied whole).
    local want = {}
    local total = produce("two_a", H.random_lines(1200, 23), 2, want)
    killed_member("spec-two", "two_a,two_b")
    total = total + produce("two_b", H.random_lines(300, 29), 1, want)
    next_owner("spec-two", "two_a,two_b", want, total)
  end)

  it("a window whose keyed stage ran but whose output was killed is emitted by the next owner", function()
    if H.sanitizer_build() then return pending("Lua only: release build only") end
    local want, total = {}, 0
    total = produce("win_in", H.random_lines(1200, 31), 2, want)
    spawn("w1", WINDOW_JOB, "", "spec-win", "win_in " .. dir .. "/w1.windows 4 fast")
    assert.is_true(wait_for(function() return io.open(dir .. "/w1.status") ~= nil end, 60), "w1 did not end")
    local err = io.open(dir .. "/w1.err"):read("*a")
    assert.is_truthy(err:find("killing this process before it writes window", 1, true), err)
    spawn("w2", WINDOW_JOB, "", "spec-win", "win_in " .. dir .. "/w2.windows 0 fast")
    -- Every word's windows, both members' outputs added up: twice its count (2 windows each).
    local function sums()
      local got, n = {}, 0
      for _, m in ipairs { "w1", "w2" } do
        local f = io.open(dir .. "/" .. m .. ".windows")
        for line in (f and f:read("*a") or ""):gmatch("[^\n]+") do
          local w, c = line:match("^%d+ (%S+) (%d+)$")
          got[w] = (got[w] or 0) + tonumber(c)
          n = n + tonumber(c)
        end
        if f then f:close() end
      end
      return got, n
    end
    local ok = wait_for(function() return select(2, sums()) >= 2 * total end, 90)
    H.sleep_ms(3000) -- (a window emitted twice would show)
    local pid = io.open(dir .. "/w2.pid"):read("*l")
    os.execute("kill -TERM " .. pid)
    assert.is_true(wait_for(function() return io.open(dir .. "/w2.status") ~= nil end, 30), "w2 did not stop")
    local got, n = sums()
    assert.is_true(ok, "the windows hold " .. n .. " of " .. 2 * total .. " records (2 windows each)")
    for w, c in pairs(want) do assert.are.equal(2 * c, got[w], w) end
    assert.are.equal(2 * total, n)
  end)

  it("to_kafka{ exactly_once = true }: each process has a transactional.id of its own", function()
    if H.sanitizer_build() then return pending("Lua only: release build only") end
    local producer = kafka.producer { brokers = B }
    for i = 1, 200 do assert(producer:send("txn_in", "line " .. i, nil, i % 2)) end
    assert(producer:flush(10000))
    producer:close()
    for _, m in ipairs { "t1", "t2" } do spawn(m, TXN_JOB, "", "spec-txn --log-level info") end
    local ok = wait_for(function() return #topic_values(B, "txn_out") >= 200 end, 60)
    local ids = {}
    for _, m in ipairs { "t1", "t2" } do
      local pid = io.open(dir .. "/" .. m .. ".pid"):read("*l")
      os.execute("kill -TERM " .. pid)
      assert.is_true(wait_for(function() return os.execute("kill -0 " .. pid .. " 2>/dev/null") ~= 0 end, 20))
      local err = io.open(dir .. "/" .. m .. ".err"):read("*a")
      ids[#ids + 1] = err:match("to_kafka txn_out: transactional%.id (%S+)")
      assert.is_truthy(ids[#ids], err)
      assert.is_falsy(err:find("to_kafka (exactly once)", 1, true), err) -- (no transaction failed)
    end
    assert.is_true(ok, "txn_out holds " .. #topic_values(B, "txn_out") .. " of 200 lines")
    assert.are_not.equal(ids[1], ids[2])
    for _, id in ipairs(ids) do assert.is_truthy(id:find("^dstream%-.*%-txn_out%-%x+%-%d+$"), id) end
    -- Every line once (the members shared the partitions; nothing moved, nothing killed).
    local seen = {}
    for _, v in ipairs(topic_values(B, "txn_out")) do
      assert.is_nil(seen[v], v .. " twice")
      seen[v] = true
    end
    for i = 1, 200 do assert.is_true(seen["line " .. i], "line " .. i) end
  end)
end)
