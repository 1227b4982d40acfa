-- Cluster mode (issue 19) beyond update_state_by_key: joins with a static dataset, windows and
-- event-time windows run by several members of one cluster (contexts of this process with
-- manual clocks, advanced together, against an embedded broker in this process), compared with
-- one process (a context outside cluster mode) on the same input and with a count in plain Lua.
-- Each cluster's first join takes the embedded broker about 3 s (its initial rebalance delay).
package.path = "spec/helpers/?.lua;" .. package.path
local dstream = require("dstream")
local kafka = require("dstream.kafka")
local ffi = require("ffi")
pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")

local function sleep_ms(ms) ffi.C.poll(nil, 0, ms) end

-- Polls cond() every 50 ms for up to `seconds`; true when it held.
local function wait_for(cond, seconds)
  local deadline = os.time() + (seconds or 20)
  while os.time() <= deadline do
    if cond() then return true end
    sleep_ms(50)
  end
  return cond()
end

local CONF = { ["session.timeout.ms"] = 3000, ["heartbeat.interval.ms"] = 300 }

-- The input: "user word" lines over 4 partitions; users u1..u5 (u5 is not in the static table).
local function input_lines(n)
  local words = { "red", "green", "blue", "cyan", "plum", "teal", "gold" }
  local lines = {}
  for i = 1, n do
    lines[i] = string.format("u%d %s", 1 + (i * 7) % 5, words[1 + (i * 3) % #words])
  end
  return lines
end

local USERS = { { "u1", "ann" }, { "u2", "bob" }, { "u3", "cy" }, { "u4", "dee" } }

-- The job every member runs: each line joined with the static user table, (user, word, name).
local function job(ctx, lines)
  local users = ctx:parallelize(USERS, 2, { pairs = true })
  local joined = {}
  lines:map(function(line)
    local user, word = line:match("^(%S+) (%S+)$")
    return user, word
  end):transform(function(rdd) return rdd:join(users) end)
    :foreach_rdd(function(rdd)
      for _, kv in ipairs(rdd:collect()) do
        joined[#joined + 1] = kv[1] .. " " .. kv[2][1] .. " " .. kv[2][2]
      end
    end)
  return joined
end

describe("cluster mode beyond update_state_by_key", function()
  local mock, B, producer

  setup(function()
    mock = kafka.mock_cluster { brokers = 1, topics = { cwin = 4 } }
    B = mock:bootstrap()
    producer = kafka.producer { brokers = B }
  end)

  teardown(function()
    if producer then producer:close() end
    if mock then mock:close() end
  end)

  it("a join with a static dataset: three members join what each reads; together, what one process joins", function()
    local lines = input_lines(60)
    for i, l in ipairs(lines) do assert(producer:send("cwin", l, nil, (i - 1) % 4)) end
    assert(producer:flush(10000))
    -- The independent count: the lines whose user is in the table.
    local names, expected = {}, {}
    for _, u in ipairs(USERS) do names[u[1]] = u[2] end
    for _, l in ipairs(lines) do
      local user, word = l:match("^(%S+) (%S+)$")
      if names[user] then expected[#expected + 1] = user .. " " .. word .. " " .. names[user] end
    end
    table.sort(expected)

    -- One process, outside cluster mode.
    local one = dstream.context { batch = "1s", clock = "manual", workers = 2 }
    local one_joined = job(one, one:kafka_stream { brokers = B, topic = "cwin", start = "earliest" })
    local ok, err = pcall(function()
      one:start()
      assert.is_true(wait_for(function()
        one:advance(1)
        return #one_joined >= #expected
      end, 20))
    end)
    pcall(one.stop, one)
    if not ok then error(err, 0) end
    table.sort(one_joined)
    assert.are.same(expected, one_joined)

    -- Three members of one cluster: each joins the lines of the partitions it owns.
    local ctxs, outs, streams = {}, {}, {}
    for m = 1, 3 do
      local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2, cluster = "spec-cwin-join" }
      streams[m] = ctx:kafka_stream { brokers = B, topic = "cwin", start = "earliest", conf = CONF }
      outs[m], ctxs[m] = job(ctx, streams[m]), ctx
    end
    ok, err = pcall(function()
      for m = 1, 3 do ctxs[m]:start() end
      -- Every partition owned, by three members (4 partitions: 2, 1, 1).
      assert.is_true(wait_for(function()
        local total, members = 0, 0
        for m = 1, 3 do
          local n = #(streams[m]:kafka_stats().assigned or {})
          total, members = total + n, members + (n > 0 and 1 or 0)
        end
        return total == 4 and members == 3
      end, 30))
      assert.is_true(wait_for(function()
        local n = 0
        for m = 1, 3 do
          ctxs[m]:advance(1)
          n = n + #outs[m]
        end
        return n >= #expected
      end, 20))
    end)
    for m = 1, 3 do pcall(ctxs[m].stop, ctxs[m]) end
    if not ok then error(err, 0) end
    local all = {}
    for m = 1, 3 do
      assert.is_true(#outs[m] > 0, "member " .. m .. " joined nothing")
      for _, r in ipairs(outs[m]) do all[#all + 1] = r end
    end
    table.sort(all)
    assert.are.same(one_joined, all)
  end)
end)
