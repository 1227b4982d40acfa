-- Event-time interval joins of two streams (left:join(right, { within = d }) and the outer
-- joins) in one process: the pairs and the outer joins' unpaired records against a plain
-- nested-loop join of the input computed here, a late record, a self-join, asymmetric bounds, the state
-- kept across a restart from a checkpoint, and the errors (at the user's line). Across
-- processes: spec/cluster_window_spec.lua.
package.path = "spec/helpers/?.lua;" .. package.path
local dstream = require("dstream")

local THIS = "interval_join_spec.lua:%d+: "

local function err_of(f)
  local ok, e = pcall(f)
  assert.is_false(ok, "expected an error")
  return tostring(e)
end

-- `o.batches` batches of each side: "key ts" lines, `o.min` to `o.min + o.more - 1` a batch,
-- keys k1..k<o.keys>, ts within the batch's second or up to `o.spread` ms before it (the
-- event_time watermark allows 1 s); both sides end with a record at 100 s, which moves the
-- watermark past every other record, then an empty batch.
local function sides(seed, o)
  local function rand(n)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed % n
  end
  local left, right = {}, {}
  for b = 1, o.batches do
    for _, side in ipairs { left, right } do
      local batch = {}
      for _ = 1, o.min + rand(o.more) do
        batch[#batch + 1] = string.format("k%d %d", 1 + rand(o.keys), b * 1000 - rand(o.spread))
      end
      side[b] = batch
    end
  end
  left[o.batches + 1], right[o.batches + 1] = { "end 100000" }, { "end 100000" }
  left[o.batches + 2], right[o.batches + 2] = {}, {}
  return left, right
end

-- Ten batches of 3 to 6 records of keys k1..k4, and a left record 3.9 s late in batch 7 (left
-- "late" lines are never paired nor emitted).
local function input()
  local left, right = sides(7, { batches = 10, min = 3, more = 4, keys = 4, spread = 800 })
  table.insert(left[7], "late 3100")
  return left, right
end

-- The join computed here: every (left, right) pair of a key with tr - tl in [-before, after],
-- then (outer) each side's records of no pair; as sorted "key l r" lines ("-" for none).
local function nested_loop(left, right, before, after, mode)
  local function flat(batches)
    local out = {}
    for _, batch in ipairs(batches) do
      for _, line in ipairs(batch) do
        local k, ts = line:match("(%S+) (%d+)")
        if k ~= "late" then out[#out + 1] = { k = k, ts = tonumber(ts) } end
      end
    end
    return out
  end
  local ls, rs = flat(left), flat(right)
  local lines, lpaired, rpaired = {}, {}, {}
  for i, l in ipairs(ls) do
    for j, r in ipairs(rs) do
      local d = r.ts - l.ts
      if l.k == r.k and d >= -before and d <= after then
        lines[#lines + 1] = l.k .. " " .. l.ts .. " " .. r.ts
        lpaired[i], rpaired[j] = true, true
      end
    end
  end
  if mode == "left_outer_join" or mode == "full_outer_join" then
    for i, l in ipairs(ls) do
      if not lpaired[i] then lines[#lines + 1] = l.k .. " " .. l.ts .. " -" end
    end
  end
  if mode == "right_outer_join" or mode == "full_outer_join" then
    for j, r in ipairs(rs) do
      if not rpaired[j] then lines[#lines + 1] = r.k .. " - " .. r.ts end
    end
  end
  table.sort(lines)
  return lines
end

local function parse(line)
  local k, ts = line:match("(%S+) (%d+)")
  return k, tonumber(ts)
end

-- The join by dstream of input() (or of left and right): its records as nested_loop's lines,
-- and when each came.
local function joined(mode, opts, ctx_opts, left, right)
  if not left then left, right = input() end
  local ctx = dstream.context(ctx_opts or { batch = "1s", clock = "manual", workers = 2 })
  local clicks = ctx:queue_stream(left):map(parse):event_time(function(_, ts) return ts end, { watermark = "1s" })
  local views = ctx:queue_stream(right):map(parse):event_time(function(_, ts) return ts end, { watermark = "1s" })
  local lines, at = {}, {}
  clicks[mode](clicks, views, opts):foreach_rdd(function(rdd, time)
    for _, kv in ipairs(rdd:collect()) do
      local l, r = kv[2][1], kv[2][2]
      local line = kv[1] .. " " .. (l or "-") .. " " .. (r or "-")
      lines[#lines + 1] = line
      at[line] = time
    end
  end)
  ctx:start()
  ctx:advance(#left)
  ctx:stop()
  table.sort(lines)
  return lines, at, clicks:late_count(), views:late_count()
end

describe("interval joins of two streams (event time)", function()
  for _, mode in ipairs { "join", "left_outer_join", "right_outer_join", "full_outer_join" } do
    it(mode .. " within 700 ms gives the nested-loop join of the input, the late record dropped", function()
      local left, right = input()
      local want = nested_loop(left, right, 700, 700, mode)
      local got, at, late_left, late_right = joined(mode, { within = "700ms", partitions = 3 })
      assert.are.same(want, got)
      assert.are.equal(1, late_left)
      assert.are.equal(0, late_right)
      -- The outer records come once the watermark passes their time + 700 ms (the last ones
      -- with the records at 100 s: batch 11).
      for line, time in pairs(at) do
        local l, r = line:match("^%S+ (%S+) (%S+)$")
        if l == "-" or r == "-" then
          local ts = tonumber(l == "-" and r or l)
          assert.is_true(time >= ts + 700 + 1000, line .. " at " .. time) -- (watermark: 1 s behind)
        end
      end
    end)
  end

  it("pairs come in the batch where the later of the two records arrives", function()
    local left, right = input()
    local arrived = {} -- "side ts" -> batch time (1 s per batch)
    for b, batch in ipairs(left) do for _, l in ipairs(batch) do arrived["l " .. l:match("%d+$")] = b * 1000 end end
    for b, batch in ipairs(right) do for _, l in ipairs(batch) do arrived["r " .. l:match("%d+$")] = b * 1000 end end
    local _, at = joined("join", { within = "700ms" })
    local n = 0
    for line, time in pairs(at) do
      local l, r = line:match("^%S+ (%d+) (%d+)$")
      assert.are.equal(math.max(arrived["l " .. l], arrived["r " .. r]), time, line)
      n = n + 1
    end
    assert.is_true(n > 10, "pairs: " .. n)
  end)

  it("a stream joined with itself (full_outer_join within 700 ms): the nested-loop self-join, each late record counted and given once", function()
    local left = input()
    local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2 }
    local ev = ctx:queue_stream(left):map(parse)
      :event_time(function(_, ts) return ts end, { watermark = "1s", late = "side" })
    local lines, late = {}, {}
    ev:full_outer_join(ev, { within = "700ms" }):foreach_rdd(function(rdd)
      for _, kv in ipairs(rdd:collect()) do lines[#lines + 1] = kv[1] .. " " .. kv[2][1] .. " " .. kv[2][2] end
    end)
    ev:late_records():foreach_rdd(function(rdd)
      for _, kv in ipairs(rdd:collect()) do late[#late + 1] = kv[1] .. " " .. kv[2] end
    end)
    ctx:start()
    ctx:advance(#left)
    ctx:stop()
    table.sort(lines)
    assert.are.same(nested_loop(left, left, 700, 700, "full_outer_join"), lines)
    assert.are.same({ "late 3100" }, late)
    assert.are.equal(1, ev:late_count())
  end)

  it("two filters of one event_time stream joined (views with their clicks): a late record counted once", function()
    local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2 }
    local ev = ctx:queue_stream({ { "view ann 800", "click ann 1100", "view bob 1200" },
      { "click bob 2000", "click ann 300", "view cy 1900" }, { "view dee 9000", "click dee 9000" } })
      :map(function(l) local kind, u, ts = l:match("(%S+) (%S+) (%d+)"); return u, { kind = kind, ts = tonumber(ts) } end)
      :event_time(function(_, v) return v.ts end, { watermark = "500ms" })
    local views = ev:filter(function(_, v) return v.kind == "view" end)
    local clicks = ev:filter(function(_, v) return v.kind == "click" end)
    local got = {}
    views:left_outer_join(clicks, { within = "1s" }):foreach_rdd(function(rdd, time)
      for _, kv in ipairs(rdd:collect()) do
        got[#got + 1] = time .. " " .. kv[1] .. " " .. kv[2][1].ts .. " " .. (kv[2][2] and kv[2][2].ts or "-")
      end
    end)
    ctx:start()
    ctx:advance(3)
    ctx:stop()
    table.sort(got)
    assert.are.same({ "1000 ann 800 1100", "2000 bob 1200 2000", "3000 cy 1900 -", "3000 dee 9000 9000" }, got)
    assert.are.equal(1, ev:late_count()) -- (click ann 300: the watermark was 600)
  end)

  it("before and after bound the right record's time asymmetrically: tr in [tl - before, tl + after]", function()
    local left, right = input()
    assert.are.same(nested_loop(left, right, 200, 900, "full_outer_join"),
      (joined("full_outer_join", { before = "200ms", after = "900ms" })))
    assert.are.same(nested_loop(left, right, 0, 500, "join"), (joined("join", { before = 0, after = 0.5 })))
    -- A zero bound as a string too ("0s" as 0); within = 0: equal times only.
    assert.are.same(nested_loop(left, right, 0, 500, "join"), (joined("join", { before = "0s", after = "500ms" })))
    assert.are.same(nested_loop(left, right, 0, 0, "left_outer_join"), (joined("left_outer_join", { within = "0ms" })))
  end)

  -- Many keys held over several batches, whose entries expire in another order than they came
  -- (times up to 900 ms out of order, bounds of 2.5 s on one side and 400 ms on the other): the
  -- keyed stage looks only at the keys with an entry past the watermark (an expiry index), so
  -- a key left out of it would keep an outer record back or lose it.
  it("many keys whose entries expire out of order: every outer join is the nested-loop join", function()
    local left, right = sides(11, { batches = 20, min = 30, more = 30, keys = 60, spread = 900 })
    for _, mode in ipairs { "join", "left_outer_join", "right_outer_join", "full_outer_join" } do
      local want = nested_loop(left, right, 400, 2500, mode)
      assert.is_true(#want > 500, #want .. " lines")
      assert.are.same(want, (joined(mode, { before = "400ms", after = "2500ms", partitions = 3 }, nil, left, right)))
    end
  end)

  it("the state lives through a restart from a checkpoint (at the default interval, 10 s): a left record before it pairs with a right one after; composite keys too", function()
    local dir = os.tmpname()
    os.remove(dir)
    local function run(left, right, batches)
      local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2, checkpoint = dir }
      -- Keys are arrays ({ user, "ad" }): restored keys must be the same keys again.
      local function keyed(line)
        local k, ts = parse(line)
        return { k, "ad" }, ts
      end
      local a = ctx:queue_stream(left):map(keyed):event_time(function(_, ts) return ts end)
      local b = ctx:queue_stream(right):map(keyed):event_time(function(_, ts) return ts end)
      local out = {}
      a:left_outer_join(b, { within = "2s" }):name("pairs"):foreach_rdd(function(rdd, time)
        for _, kv in ipairs(rdd:collect()) do
          out[#out + 1] = time .. " " .. kv[1][1] .. "/" .. kv[1][2] .. " " .. kv[2][1] .. " " .. tostring(kv[2][2])
        end
      end)
      ctx:start()
      ctx:advance(batches)
      ctx:stop()
      table.sort(out)
      return out
    end
    -- The same queues in both runs (a restart goes on where the checkpoint's queues stood): ten
    -- batches to the first checkpoint, then one more that the restart does again.
    local left, right = { { "ann 1000" } }, { { "zed 500" } }
    for i = 2, 11 do left[i], right[i] = {}, {} end
    left[12], right[12] = {}, { "ann 2500", "bob 100000" }
    left[13], right[13] = { "bob 9000" }, {}
    left[14], right[14] = { "cy 20000" }, {}
    -- Before: ann at 1000 on the left; the watermark stays at 500 (no pair, nothing evicted).
    assert.are.same({}, run(left, right, 11))
    -- After the restart (at the checkpoint of 10 s): ann at 2500 on the right pairs with the left
    -- ann the checkpoint kept; bob at 9000 finds none, emitted once the watermark (20000, the
    -- left's) passes 11000.
    assert.are.same({ "12000 ann/ad 1000 2500", "14000 bob/ad 9000 nil" }, run(left, right, 4))
    os.execute("rm -rf " .. dir)
  end)

  it("refuses a bad within, before without after, within with before, cogroup within, a side without event time, at the user's line", function()
    local ctx = dstream.context { batch = "1s", clock = "manual" }
    local a = ctx:queue_stream({}):map(parse)
    local b = ctx:queue_stream({}):map(parse)
    local ta = a:event_time(function(_, ts) return ts end)
    local tb = b:event_time(function(_, ts) return ts end)
    local e = err_of(function() ta:join(tb, { within = "soon" }) end)
    assert.truthy(e:find(THIS .. "join: within: a duration is a number of seconds or a string like"), e)
    e = err_of(function() ta:join(tb, { within = -1 }) end)
    assert.truthy(e:find(THIS .. "join: within: a duration must be a positive number of seconds %(or 0%), got %-1"), e)
    e = err_of(function() ta:left_outer_join(tb, { before = "1s" }) end)
    assert.truthy(e:find(THIS .. "left_outer_join: before and after go together"), e)
    e = err_of(function() ta:join(tb, { within = "1s", after = "1s" }) end)
    assert.truthy(e:find(THIS .. "join: give within = d .- or before and after .-, not both"), e)
    e = err_of(function() ta:cogroup(tb, { within = "1s" }) end)
    assert.truthy(e:find(THIS .. "cogroup: within is for join and the outer joins"), e)
    e = err_of(function() ta:join(tb, { witihn = "1s" }) end)
    assert.truthy(e:find(THIS .. "join: unknown option 'witihn' %(it takes after, before, partitions, within%)"), e)
    e = err_of(function() a:join(tb, { within = "1s" }) end)
    assert.truthy(e:find(THIS .. "join: a join within a time needs event time on both streams: the left stream has none %(call event_time%(fn, opts%) on it first%)"), e)
    e = err_of(function() ta:full_outer_join(b, { within = "1s" }) end)
    assert.truthy(e:find(THIS .. "full_outer_join: a join within a time needs event time on both streams: the right stream has none"), e)
    e = err_of(function() ta:left_outer_join(tb, "10s") end)
    assert.truthy(e:find(THIS .. "left_outer_join: expected a number of partitions or a table of options, got the string \"10s\": a join"
      .. " within a time is left_outer_join%(other, { within = \"10s\" }%), after event_time on both streams"), e)
    e = err_of(function() ta:join(7, { within = "1s" }) end)
    assert.truthy(e:find(THIS .. "join: expected a stream, got number"), e)
    -- A static dataset (a batch) on the other side: joined per batch through transform.
    e = err_of(function() a:left_outer_join(ctx:parallelize({ { "ann", 1 } }, 1, { pairs = true })) end)
    assert.truthy(e:find(THIS .. "left_outer_join: expected a stream, got a batch %(rdd%): join a static dataset through"
      .. " transform%(function%(rdd%) return rdd:left_outer_join%(dataset%) end%)"), e)
    -- Without within, one process joins batch by batch, as before.
    assert.has_no.errors(function() a:join(b) end)
  end)

  it("in cluster mode, a join of two streams without within is refused at the user's line, saying what to write", function()
    local ctx = dstream.context { batch = "1s", clock = "manual", cluster = "spec-ijoin" }
    local a = ctx:queue_stream({}):map(parse)
    local b = ctx:queue_stream({}):map(parse)
    for _, mode in ipairs { "join", "left_outer_join", "right_outer_join", "full_outer_join", "cogroup" } do
      local e = err_of(function() a[mode](a, b, 4) end)
      assert.truthy(e:find(THIS .. mode .. ": in cluster mode a join of two streams batch by batch would join only the"
        .. " records each process reads, so a key's records read by two processes would never meet: join on event"
        .. " time, " .. (mode == "cogroup" and "join" or mode) .. "%(other, { within = \"10s\" }%) after event_time on both streams %(the same across"
        .. " processes%), or join a static dataset through transform%(function%(rdd%) return rdd:" .. mode
        .. "%(dataset%) end%)"), e)
    end
    local ta = a:event_time(function(_, ts) return ts end, { late = "side" })
    local e = err_of(function() ta:join(b:event_time(function(_, ts) return ts end), { within = "1s" }) end)
    assert.truthy(e:find(THIS .. "join: late = \"side\" %(late_records%(%)%) on a side of a join within a time is not"
      .. " supported in cluster mode"), e)
  end)
end)
