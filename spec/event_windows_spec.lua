-- window() and group_by_key_and_window() after event_time (issue 17 item 6): they group by
-- the records' own timestamps, with the watermark, emit modes and late rules of the other
-- event-time windows. window(len, slide) gives the raw records of each window the watermark
-- closes (or, with emit = "update", of each window a batch added to); group_by_key_and_window
-- gives (key, { start, ["end"], values }) per key and window. Expectations come from a
-- plain-Lua model of those rules (model below), at 1 and 4 workers.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")

local repr = H.repr

-- Seeded batches of records "user ts": timestamps move forward about 1 s a batch, with some
-- out of order by up to 2.5 s (late behind a 1 s watermark).
local USERS = { "ann", "bob", "cy" }
local function batches(n, seed)
  math.randomseed(seed)
  local out = {}
  for b = 1, n do
    local batch = {}
    if b % 5 ~= 4 then
      for i = 1, math.random(3, 9) do
        local ts = b * 1000 + math.random(-2500, 500)
        if ts < 0 then ts = 0 end
        batch[i] = USERS[math.random(#USERS)] .. " " .. ts
      end
    end
    out[b] = batch
  end
  return out
end
local INPUT = batches(10, 606)
local EXTRA = 3 -- batches after the input: the watermark stays, nothing more closes

local function parse(line)
  local user, ts = line:match("(%S+) (%d+)")
  return user, tonumber(ts)
end

-- The model. For each batch: records older than the previous batches' watermark are late;
-- the others go into every window [start, start + len) (start a multiple of slide) that holds
-- their time; then the watermark is the largest time so far minus delay. Returns per batch
-- { windows = { { start, records, keys } } emitted, late = {lines} }; with emit = "update",
-- the windows a batch added to, and keys = the users it added to each (group_by_key_and_window
-- emits those keys only).
local function model(input, len, slide, delay, emit)
  local max_ts, windows, out = nil, {}, {}
  for b = 1, #input + EXTRA do
    local wm_prev = max_ts and max_ts - delay
    local late, changed = {}, {}
    for _, line in ipairs(input[b] or {}) do
      local _, ts = parse(line)
      if wm_prev and ts < wm_prev then
        late[#late + 1] = line
      else
        if not max_ts or ts > max_ts then max_ts = ts end
        for start = math.floor(ts / slide) * slide, ts - len + 1, -slide do
          windows[start] = windows[start] or {}
          table.insert(windows[start], line)
          changed[start] = changed[start] or {}
          changed[start][(parse(line))] = true
        end
      end
    end
    local wm = max_ts and max_ts - delay
    local emitted = {}
    for start, recs in pairs(windows) do
      local closed = wm and start + len <= wm
      if (emit == "final" and closed) or (emit == "update" and changed[start]) then
        emitted[#emitted + 1] = { start = start, records = { unpack(recs) }, -- (as it is now)
          keys = emit == "update" and changed[start] or nil } -- ("update": the keys it changed)
      end
    end
    for start in pairs(windows) do
      if wm and start + len <= wm then windows[start] = nil end
    end
    out[b] = { windows = emitted, late = late }
  end
  return out
end

-- Runs the job: event_time on "user ts" lines (pairs user, line), op(stream) collected per batch,
-- and late_records() per batch.
local function run(cfg, opts, op)
  return H.with_context(cfg, function(ctx)
    local s = ctx:queue_stream(H.deep_copy(INPUT))
      :map(function(line) return (parse(line)), line end)
      :event_time(function(_, line) return select(2, parse(line)) end,
        { watermark = opts.delay > 0 and opts.delay .. "ms" or nil, late = "side", emit = opts.emit })
    local got, late = {}, {}
    op(s):foreach_rdd(function(rdd) got[#got + 1] = rdd:collect() end)
    s:late_records():foreach_rdd(function(rdd)
      local l = {}
      for i, kv in ipairs(rdd:collect()) do l[i] = kv[2] end
      late[#late + 1] = H.sorted(l)
    end)
    ctx:start()
    ctx:advance(#INPUT + EXTRA)
    return { got = got, late = late, late_count = s:late_count() }
  end)
end

local CASES = {
  { len = 2000, slide = 2000, delay = 1000, emit = "final" },
  { len = 3000, slide = 1000, delay = 1000, emit = "final" },
  { len = 2000, slide = 1000, delay = 0, emit = "update" },
}

for _, cfg in ipairs(H.configs({ 1, 4 }, { 3 })) do
  describe("event-time window() and group_by_key_and_window (" .. cfg.name .. ")", function()
    for _, c in ipairs(CASES) do
      local name = ("len %d, slide %d, watermark %d ms, emit %s"):format(c.len, c.slide, c.delay, c.emit)
      local want = model(INPUT, c.len, c.slide, c.delay, c.emit)

      it("window(): the records of each window, " .. name, function()
        local res = run(cfg, c, function(s) return s:window(c.len .. "ms", c.slide .. "ms") end)
        assert.are.equal(#INPUT + EXTRA, #res.got)
        local some, total_late = false, 0
        for b, w in ipairs(want) do
          local expect = {}
          for _, win in ipairs(w.windows) do
            for _, line in ipairs(win.records) do expect[#expect + 1] = line end
          end
          local got = {}
          for i, kv in ipairs(res.got[b]) do
            assert.are.equal((parse(kv[2])), kv[1], "a record keeps its pair")
            got[i] = kv[2]
          end
          assert.are.same(H.sorted(expect), H.sorted(got), "batch " .. b)
          assert.are.same(H.sorted(w.late), res.late[b], "late records of batch " .. b)
          some = some or #expect > 0
          total_late = total_late + #w.late
        end
        assert.is_true(some, "some window was emitted")
        assert.is_true(total_late > 0, "the input has late records")
        assert.are.equal(total_late, res.late_count)
      end)

      it("group_by_key_and_window: (key, { start, end, values }) per key and window, " .. name, function()
        local res = run(cfg, c, function(s)
          return s:group_by_key_and_window(c.len .. "ms", c.slide .. "ms", 4)
        end)
        for b, w in ipairs(want) do
          local expect = {}
          for _, win in ipairs(w.windows) do
            local per = {}
            for _, line in ipairs(win.records) do
              local user = parse(line)
              per[user] = per[user] or {}
              table.insert(per[user], line)
            end
            for user, lines in pairs(per) do
              if not win.keys or win.keys[user] then expect[#expect + 1] = repr({ user, win.start, win.start + c.len, H.sorted(lines) }) end
            end
          end
          local got = {}
          for i, kv in ipairs(res.got[b]) do
            local v = kv[2]
            got[i] = repr({ kv[1], v.start, v["end"], H.sorted(v.values) })
          end
          assert.are.same(H.sorted(expect), H.sorted(got), "batch " .. b)
          assert.are.same(H.sorted(w.late), res.late[b], "late records of batch " .. b)
        end
      end)
    end

    it("reduce_by_key_and_window's filter applies to event-time windows", function()
      local c = CASES[2]
      local want = model(INPUT, c.len, c.slide, c.delay, c.emit)
      local res = run(cfg, c, function(s)
        return s:map_values(function() return 1 end):reduce_by_key_and_window(
          function(a, b) return a + b end, c.len .. "ms", c.slide .. "ms",
          { filter = function(_, n) return n >= 2 end })
      end)
      local kept = 0
      for b, w in ipairs(want) do
        local expect = {}
        for _, win in ipairs(w.windows) do
          local per = {}
          for _, line in ipairs(win.records) do
            local user = parse(line)
            per[user] = (per[user] or 0) + 1
          end
          for user, n in pairs(per) do
            if n >= 2 then expect[#expect + 1] = repr({ user, win.start, n }) end
          end
        end
        local got = {}
        for i, kv in ipairs(res.got[b]) do got[i] = repr({ kv[1], kv[2].start, kv[2].value }) end
        assert.are.same(H.sorted(expect), H.sorted(got), "batch " .. b)
        kept = kept + #got
      end
      assert.is_true(kept > 0)
    end)

    it("count() after window(): one count per batch of the closed windows' records", function()
      local c = CASES[1]
      local want = model(INPUT, c.len, c.slide, c.delay, c.emit)
      local res = run(cfg, c, function(s) return s:window("2s", "2s"):count() end)
      for b, w in ipairs(want) do
        local n = 0
        for _, win in ipairs(w.windows) do n = n + #win.records end
        assert.are.same({ n }, res.got[b], "batch " .. b)
      end
    end)
  end)
end

describe("event-time window() and group_by_key_and_window checks", function()
  it("window lengths are still checked on the user's line", function()
    H.with_context({ workers = 1 }, function(ctx)
      local s = ctx:queue_stream({ { 1 } }):event_time(function(x) return x end)
      local ok, err = pcall(s.window, s, "1500ms")
      assert.is_false(ok)
      assert.is_truthy(tostring(err):find("multiple of the batch interval", 1, true), err)
      assert.is_truthy(tostring(err):find("event_windows_spec.lua", 1, true), err)
    end)
  end)

  it("group_by_key_and_window needs pairs: a single value fails naming the operator", function()
    local ok, err = pcall(H.with_context, { workers = 2, partitions = 2 }, function(ctx)
      ctx:queue_stream({ { 1, 2 } }):event_time(function(x) return x end)
        :group_by_key_and_window("2s", "1s"):foreach_rdd(function(rdd) rdd:collect() end)
      ctx:start()
      ctx:advance(1)
    end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("group_by_key_and_window", 1, true), err)
  end)
end)

describe("event-time window() and group_by_key_and_window across a checkpoint", function()
  local dstream = require("dstream")
  local ckpt_dir = H.scratch_dirs(after_each)

  -- n batches of the job with checkpoint directory dir, stopped gracefully: per batch, what
  -- window() and group_by_key_and_window gave (sorted text).
  local function job(dir, n)
    return H.run_checkpointed(dir, n, function()
      return dstream.context { batch = "1s", clock = "manual", workers = 2, partitions = 3 }
    end, function(ctx, out)
      local s = ctx:queue_stream(H.deep_copy(INPUT))
        :map(function(line) return (parse(line)), line end)
        :event_time(function(_, line) return select(2, parse(line)) end, { watermark = "1s" })
      s:window("3s", "1s"):foreach_rdd(function(rdd, time)
        local l = {}
        for i, kv in ipairs(rdd:collect()) do l[i] = kv[2] end
        out[#out + 1] = { time, "window", H.sorted(l) }
      end)
      s:group_by_key_and_window("2s", "2s"):foreach_rdd(function(rdd, time)
        local l = {}
        for i, kv in ipairs(rdd:collect()) do l[i] = repr({ kv[1], kv[2].start, H.sorted(kv[2].values) }) end
        out[#out + 1] = { time, "group", H.sorted(l) }
      end)
    end)
  end

  it("the open windows' records and groups are restored", function()
    local total = #INPUT + EXTRA
    local whole = job(ckpt_dir(), total)
    local dir = ckpt_dir()
    local joined = job(dir, 5)
    for _, b in ipairs(job(dir, total - 5)) do joined[#joined + 1] = b end
    assert.are.equal(2 * total, #whole)
    assert.are.same(whole, joined)
    local some = 0
    for _, b in ipairs(whole) do some = some + #b[3] end
    assert.is_true(some > 10)
  end)
end)
