-- Checkpoints and recovery, in process, on a manual clock: a job built by one function runs
-- some batches, stops gracefully (which writes a checkpoint), and a new context built by the
-- same function with the same checkpoint directory runs the rest. Its batches must be exactly
-- those of one uninterrupted run: the state of update_state_by_key, map_with_state (with a
-- timeout), reduce_by_key_and_window (with and without an inverse, slides longer than a
-- batch), event-time windows and sessions (with the watermark and the late count), and the
-- positions of queue_stream and rate_stream all carry over. Also: state named with :name()
-- survives unrelated changes to the script; a changed kind of stateful operator or partition
-- count is a clear error saying how to start afresh; a corrupt or truncated newest checkpoint
-- is reported on stderr and the one before it is used; a directory where no checkpoint can be
-- read is an error naming each file (read_newest), never a fresh start; pruning keeps the
-- newest 3 readable generations and never deletes an unreadable file.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")

local dstream = require("dstream")
local core = require("dstream.core")
local checkpoint = require("dstream.state.checkpoint")
local buffer = require("string.buffer")

local add = function(a, b) return a + b end
local sub = function(a, b) return a - b end

local ckpt_dir = H.scratch_dirs(after_each) -- checkpoint directories, removed after each test
local checkpoint_files = H.checkpoint_files

-- A manual-clock context for the builds below, made through get_or_create as a job would.
local function new_context(dir, opts)
  opts = opts or {}
  return dstream.get_or_create(dir, function()
    return dstream.context {
      batch = opts.batch or "1s", clock = "manual", workers = opts.workers or 2,
      partitions = opts.partitions or 3, checkpoint_interval = opts.checkpoint_interval,
    }
  end)
end

-- Collects every batch of a stream into out: { time = t, records = sorted records }.
local function collect(stream, out)
  stream:foreach_rdd(function(rdd, time)
    out[#out + 1] = { time = time, records = H.sorted(rdd:collect()) }
  end)
end

-- Runs `n` batches of the job that build(dir) makes (it returns ctx, out); then stops it,
-- gracefully unless opts.abrupt. Returns out and the context. The context is always stopped.
local function run_job(build, dir, n, opts)
  opts = opts or {}
  local ctx, out = build(dir)
  local ok, err = pcall(function()
    ctx:start()
    if ctx.on_start then ctx.on_start() end
    if n > 0 then ctx:advance(n) end
    if opts.abrupt then ctx:stop() else ctx:stop { graceful = true } end
  end)
  if not ok then
    pcall(ctx.stop, ctx)
    error(err, 0)
  end
  return out, ctx
end

-- The batches of one uninterrupted run of `total` batches, and those of a run stopped after
-- `split` batches and restarted from its checkpoint for the rest.
local function split_run(build, total, split)
  local whole = run_job(build, ckpt_dir(), total)
  local dir = ckpt_dir()
  local first, ctx1 = run_job(build, dir, split)
  local second, ctx2 = run_job(build, dir, total - split)
  local joined = {}
  for _, b in ipairs(first) do joined[#joined + 1] = b end
  for _, b in ipairs(second) do joined[#joined + 1] = b end
  return whole, joined, ctx1, ctx2
end

local function assert_same_run(whole, joined, total)
  assert.are.equal(total, #whole, "the uninterrupted run has every batch")
  assert.are.equal(#whole, #joined, "number of batches across the restart")
  for i = 1, #whole do
    assert.are.equal(whole[i].time, joined[i].time, "time of batch " .. i)
    assert.are.same(whole[i].records, joined[i].records,
      ("batch %d (%d ms): records after the restart differ from an uninterrupted run"):format(i, whole[i].time))
  end
end

-- Seeded input: `n` batches of pairs with keys from a small vocabulary and values 1..9.
local function pair_batches(n, seed)
  math.randomseed(seed)
  local out = {}
  for b = 1, n do
    local batch = {}
    if b % 5 ~= 3 then -- some batches are empty
      for i = 1, math.random(1, 12) do batch[i] = { H.VOCAB[math.random(6)], math.random(1, 9) } end
    end
    out[b] = batch
  end
  return out
end

describe("checkpoint restore after a graceful stop", function()
  local INPUT = pair_batches(12, 101)

  it("keeps update_state_by_key's state (table states, keys removed and coming back)", function()
    local function build(dir)
      local ctx = new_context(dir)
      local out = {}
      collect(ctx:queue_stream(H.deep_copy(INPUT), { pairs = true })
        :update_state_by_key(function(values, s)
          local sum, seen = s and s.sum or 0, s and s.seen or 0
          for i = 1, #values do sum, seen = sum + values[i], seen + 1 end
          if sum > 60 then return nil end -- removed; comes back with new values
          return { sum = sum, seen = seen, idle = #values == 0 and (s and s.idle or 0) + 1 or 0 }
        end), out)
      return ctx, out
    end
    for _, split in ipairs({ 1, 5, 11 }) do
      local whole, joined, _, ctx2 = split_run(build, 12, split)
      assert_same_run(whole, joined, 12)
      assert.are.equal(split * 1000, ctx2.recovered_from)
    end
  end)

  it("keeps map_with_state's state and its timeouts", function()
    -- What fn returns, and the state snapshots (as "state <key>" pairs), per batch.
    local function build(dir)
      local ctx = new_context(dir)
      local out = {}
      local s = ctx:queue_stream(H.deep_copy(INPUT), { pairs = true })
        :map_with_state {
          timeout = "3s",
          fn = function(key, value, state)
            if state:is_timing_out() then return key, "timeout " .. state:get() end
            local n = (state:get() or 0) + value
            state:update(n)
            return key, n
          end,
        }
      s:state_snapshots():map(function(k, v) return "state " .. k, v end):union(s)
        :foreach_rdd(function(rdd, time)
          out[#out + 1] = { time = time, records = H.sorted(rdd:collect()) }
        end)
      return ctx, out
    end
    for _, split in ipairs({ 2, 7 }) do
      local whole, joined = split_run(build, 12, split)
      assert_same_run(whole, joined, 12)
      local timeouts = 0
      for _, b in ipairs(whole) do
        for _, r in ipairs(b.records) do
          if type(r[2]) == "string" and r[2]:match("^timeout") then timeouts = timeouts + 1 end
        end
      end
      assert.is_true(timeouts > 0, "the input makes some keys time out")
    end
  end)

  local function window_build(len, slide, opts)
    return function(dir)
      local ctx = new_context(dir)
      local out = {}
      collect(ctx:queue_stream(H.deep_copy(INPUT), { pairs = true })
        :reduce_by_key_and_window(add, len, slide, opts), out)
      return ctx, out
    end
  end

  it("keeps reduce_by_key_and_window's panes (no inverse)", function()
    for _, split in ipairs({ 2, 4, 9 }) do
      local whole, joined = split_run(window_build("3s", "1s"), 12, split)
      assert_same_run(whole, joined, 12)
    end
  end)

  it("keeps reduce_by_key_and_window's running windows (with an inverse and a filter)", function()
    local build = window_build("4s", "1s", { inverse = sub, filter = function(_, v) return v ~= 0 end })
    for _, split in ipairs({ 3, 6 }) do
      local whole, joined = split_run(build, 12, split)
      assert_same_run(whole, joined, 12)
    end
  end)

  it("keeps a window whose slide is longer than a batch in phase, stopped between slides", function()
    for _, opts in ipairs({ {}, { inverse = sub } }) do
      local build = window_build("6s", "2s", opts)
      for _, split in ipairs({ 3, 5 }) do -- 3 s and 5 s: in the middle of a slide
        local whole, joined = split_run(build, 12, split)
        assert_same_run(whole, joined, 6) -- a window every 2 s
      end
    end
  end)

  -- Records { key, ts, value }: around the batch time, some up to 4 s old (late by then).
  local EVENTS = {}
  math.randomseed(7)
  for b = 1, 14 do
    local batch = {}
    if b % 6 ~= 0 then
      for i = 1, math.random(2, 10) do
        batch[i] = { H.VOCAB[math.random(5)], b * 1000 - math.random(0, 4000), math.random(1, 9) }
      end
    end
    EVENTS[b] = batch
  end

  local function event_build(kind)
    return function(dir)
      local ctx = new_context(dir)
      local out = {}
      local events = ctx:queue_stream(H.deep_copy(EVENTS))
        :event_time(function(r) return r[2] end, { watermark = "1500ms" })
      local keyed = events:map(function(r) return r[1], r[3] end)
      local w
      if kind == "session" then
        w = keyed:session_window("1500ms"):map(function(k, s)
          table.sort(s.values)
          return k, { start = s.start, ["end"] = s["end"], count = s.count, values = s.values }
        end)
      else
        w = keyed:reduce_by_key_and_window(add, "3s", "1s")
      end
      w:foreach_rdd(function(rdd, time)
        local records = H.sorted(rdd:collect())
        records[#records + 1] = "late " .. events:late_count()
        out[#out + 1] = { time = time, records = records }
      end)
      return ctx, out
    end
  end

  it("keeps event-time windows: window state, watermark and late count", function()
    for _, split in ipairs({ 3, 8 }) do
      local whole, joined = split_run(event_build("window"), 14, split)
      assert_same_run(whole, joined, 14)
    end
    local whole = run_job(event_build("window"), ckpt_dir(), 14)
    assert.are_not.equal("late 0", whole[14].records[#whole[14].records], "some records are late")
  end)

  it("keeps event-time sessions", function()
    for _, split in ipairs({ 4, 9 }) do
      local whole, joined = split_run(event_build("session"), 14, split)
      assert_same_run(whole, joined, 14)
    end
  end)

  it("keeps queue_stream's position: lists taken before the stop are not taken again", function()
    local lists = { { "a" }, { "b", "b" }, { "c" }, { "d" }, { "e" } }
    local function build(dir)
      local ctx = new_context(dir)
      local out = {}
      collect(ctx:queue_stream(H.deep_copy(lists), { default = { "idle" } }), out)
      return ctx, out
    end
    local dir = ckpt_dir()
    local first = run_job(build, dir, 2)
    local second = run_job(build, dir, 5)
    local got = {}
    for _, b in ipairs(first) do got[#got + 1] = b.records end
    for _, b in ipairs(second) do got[#got + 1] = b.records end
    assert.are.same({ { "a" }, { "b", "b" }, { "c" }, { "d" }, { "e" }, { "idle" }, { "idle" } }, got)
    assert.are.same({ 3000, 4000, 5000, 6000, 7000 }, { second[1].time, second[2].time,
      second[3].time, second[4].time, second[5].time })

    -- one_at_a_time = false: the first batch took everything, so nothing comes back.
    local function build_all(d)
      local ctx = new_context(d)
      local out = {}
      collect(ctx:queue_stream(H.deep_copy(lists), { one_at_a_time = false }), out)
      return ctx, out
    end
    local dir2 = ckpt_dir()
    local a = run_job(build_all, dir2, 1)
    local b = run_job(build_all, dir2, 2)
    assert.are.same({ "a", "b", "b", "c", "d", "e" }, a[1].records)
    assert.are.same({ {}, {} }, { b[1].records, b[2].records })
  end)

  it("keeps rate_stream's position, carry and backlog", function()
    -- 7 rows per second in 500 ms batches (3.5 per batch: a carry), held to 1 row per second
    -- (as backpressure would) until 2.5 s, so a backlog builds up, then let go: the batch
    -- after that takes the whole backlog. The limit is set before each batch from its time,
    -- also for the first batch after a restart (a rate limit is not part of a checkpoint).
    local function limit_for(time) return time <= 2500 and 1 or nil end
    local function build(dir)
      local ctx = new_context(dir, { batch = "500ms" })
      local out = {}
      local rows = ctx:rate_stream { rows_per_second = 7 }
      collect(rows, out)
      rows:foreach_rdd(function(_, time) rows:set_rate(limit_for(time + 500)) end)
      ctx.on_start = function() rows:set_rate(limit_for(ctx.time + 500)) end
      return ctx, out
    end
    for _, split in ipairs({ 1, 2, 4, 7 }) do
      local whole, joined = split_run(build, 10, split)
      assert_same_run(whole, joined, 10)
    end
    local whole = run_job(build, ckpt_dir(), 10)
    local all, sizes = {}, {}
    for i, b in ipairs(whole) do
      sizes[i] = #b.records
      for _, v in ipairs(b.records) do all[#all + 1] = v end
    end
    assert.are.same(H.range(0, #all - 1), all, "consecutive values from 0, none skipped")
    assert.are.same({ 0, 1, 0, 1, 0, 19, 3, 4, 3, 4 }, sizes, "rows per batch")
  end)

  it("restarts at the batch after the checkpoint's, in phase with the first start", function()
    local function build(dir)
      local ctx = new_context(dir, { batch = "250ms" })
      local out = {}
      collect(ctx:queue_stream({ { 1 }, { 2 }, { 3 } }), out)
      return ctx, out
    end
    local dir = ckpt_dir()
    local _, ctx1 = run_job(build, dir, 3)
    local out, ctx2 = run_job(build, dir, 2)
    assert.are.equal(750, ctx2.recovered_from)
    assert.are.equal(ctx1.zero_time, ctx2.zero_time)
    assert.are.same({ 1000, 1250 }, { out[1].time, out[2].time })
  end)
end)

describe("a checkpoint directory is one running context's", function()
  it("a second context started on it while the first runs is refused, naming the first", function()
    local dir = H.tmpdir()
    local a = dstream.context { clock = "manual", workers = 1, checkpoint = dir, name = "first" }
    local b = dstream.context { clock = "manual", workers = 1, checkpoint = dir .. "/" }
    a:queue_stream({ { 1 } }):print()
    b:queue_stream({ { 2 } }):print()
    a:start()
    local ok, err = pcall(b.start, b)
    a:stop()
    b:stop()
    H.rmdir(dir)
    assert.is_false(ok)
    assert.matches("start: context 'first' is running with checkpoint directory " .. dir, tostring(err), 1, true)
  end)
end)

describe("state matched to operators", function()
  local INPUT = pair_batches(8, 202)
  local function sum_state(values, s)
    s = s or 0
    for i = 1, #values do s = s + values[i] end
    return s
  end

  -- The reference: the named totals over all batches, in one run.
  local function totals_build(dir)
    local ctx = new_context(dir)
    local out = {}
    collect(ctx:queue_stream(H.deep_copy(INPUT), { pairs = true })
      :update_state_by_key(sum_state):name("totals"), out)
    return ctx, out
  end

  it("a named state survives an extra map before it, an extra output and a new stateful operator before it", function()
    local whole = run_job(totals_build, ckpt_dir(), 8)
    local dir = ckpt_dir()
    run_job(totals_build, dir, 3)
    local extra = {}
    local function changed(d)
      local ctx = new_context(d)
      local out = {}
      local src = ctx:queue_stream(H.deep_copy(INPUT), { pairs = true })
        :map(function(k, v) return k, v * 1 end) -- an extra map
      -- A new stateful operator, made first: it takes position 1, and starts empty.
      collect(src:update_state_by_key(function(values, s) return (s or 0) + #values end), extra)
      src:count():foreach_rdd(function() end) -- an extra output
      collect(src:update_state_by_key(sum_state):name("totals"), out)
      return ctx, out
    end
    local after, ctx = run_job(changed, dir, 5)
    assert.are.equal(3000, ctx.recovered_from)
    for i = 1, 5 do
      assert.are.same(whole[3 + i].records, after[i].records, "named totals at batch " .. (3 + i))
    end
    -- The new operator counted only the records after the restart.
    local n = 0
    for b = 4, 8 do n = n + #INPUT[b] end
    local counted = 0
    for _, kv in ipairs(extra[5].records) do counted = counted + kv[2] end
    assert.are.equal(n, counted)
  end)

  it("an unnamed state (matched by position) survives an extra map and an extra output", function()
    local function plain(d, changed)
      local ctx = new_context(d)
      local out = {}
      local src = ctx:queue_stream(H.deep_copy(INPUT), { pairs = true })
      if changed then
        src = src:map(function(k, v) return k, v end):filter(function() return true end)
        src:foreach_rdd(function() end)
      end
      collect(src:update_state_by_key(sum_state), out)
      return ctx, out
    end
    local whole = run_job(plain, ckpt_dir(), 8)
    local dir = ckpt_dir()
    run_job(plain, dir, 4)
    local after = run_job(function(d) return plain(d, true) end, dir, 4)
    for i = 1, 4 do assert.are.same(whole[4 + i].records, after[i].records, "batch " .. (4 + i)) end
  end)

  -- Starts build(dir) and returns the error of ctx:start() (the context is stopped).
  local function start_error(build, dir)
    local ctx = build(dir)
    local ok, err = pcall(ctx.start, ctx)
    pcall(ctx.stop, ctx)
    assert.is_false(ok, "ctx:start() should fail")
    return tostring(err)
  end

  local function assert_mentions(msg, words)
    for _, w in ipairs(words) do
      assert.is_truthy(msg:find(w, 1, true), ("the error should mention %q: %s"):format(w, msg))
    end
  end

  it("a changed kind of stateful operator at the same position is a clear error", function()
    local dir = ckpt_dir()
    run_job(function(d)
      local ctx = new_context(d)
      local out = {}
      collect(ctx:queue_stream(H.deep_copy(INPUT), { pairs = true }):update_state_by_key(sum_state), out)
      return ctx, out
    end, dir, 2)
    local msg = start_error(function(d)
      local ctx = new_context(d)
      ctx:queue_stream(H.deep_copy(INPUT), { pairs = true })
        :map_with_state { fn = function(k, v) return k, v end }
        :foreach_rdd(function() end)
      return ctx
    end, dir)
    assert_mentions(msg, { "update_state_by_key", "map_with_state", "#1", dir, "start afresh", "remove" })
  end)

  it("a named state whose operator changed kind is a clear error naming it", function()
    local dir = ckpt_dir()
    run_job(totals_build, dir, 2)
    local msg = start_error(function(d)
      local ctx = new_context(d)
      ctx:queue_stream(H.deep_copy(INPUT), { pairs = true })
        :reduce_by_key_and_window(add, "2s"):name("totals")
        :foreach_rdd(function() end)
      return ctx
    end, dir)
    assert_mentions(msg, { "'totals'", "update_state_by_key", "reduce_by_key_and_window", dir, "start afresh" })
  end)

  it("a changed partition count is a clear error", function()
    local dir = ckpt_dir()
    local function build(d, nparts)
      local ctx = new_context(d)
      local out = {}
      collect(ctx:queue_stream(H.deep_copy(INPUT), { pairs = true })
        :update_state_by_key(sum_state, nparts):name("totals"), out)
      return ctx, out
    end
    run_job(function(d) return build(d, 3) end, dir, 2)
    local msg = start_error(function(d) return build(d, 2) end, dir)
    assert_mentions(msg, { "'totals'", "3 partitions", "now has 2", dir, "start afresh" })
    -- The checkpoint is still usable with the partition count it was written with.
    local out, ctx = run_job(function(d) return build(d, 3) end, dir, 1)
    assert.are.equal(2000, ctx.recovered_from)
    assert.are.equal(3000, out[1].time)
  end)
end)

describe("damaged checkpoints", function()
  local INPUT = pair_batches(8, 303)
  local function build(dir)
    local ctx = new_context(dir, { checkpoint_interval = "1s" })
    local out = {}
    collect(ctx:queue_stream(H.deep_copy(INPUT), { pairs = true })
      :update_state_by_key(function(values, s)
        s = s or 0
        for i = 1, #values do s = s + values[i] end
        return s
      end), out)
    return ctx, out
  end

  -- Runs build with io.stderr replaced; returns what was written to it, and the results.
  local function with_stderr(fn)
    local real, written = io.stderr, {}
    io.stderr = {
      write = function(self, ...)
        for i = 1, select("#", ...) do written[#written + 1] = tostring(select(i, ...)) end
        return self
      end,
      flush = function(self) return self end,
    }
    local ok, a, b = pcall(fn)
    io.stderr = real
    if not ok then error(a, 0) end
    return table.concat(written), a, b
  end

  -- Writes 4 checkpoints (one per batch; no final one), damages the newest with damage(path),
  -- restarts and runs the remaining batches: they must continue from the one before.
  local function check_fallback(damage, expect_words)
    local whole = run_job(build, ckpt_dir(), 8)
    local dir = ckpt_dir()
    run_job(build, dir, 4, { abrupt = true })
    local files = checkpoint_files(dir)
    assert.are.equal(3, #files, "the last 3 generations are kept")
    local newest = files[#files]
    damage(newest)
    local err, out, ctx = with_stderr(function() return run_job(build, dir, 5) end)
    assert.are.equal(3000, ctx.recovered_from, "the checkpoint before the damaged one is used")
    for i = 1, 5 do
      assert.are.equal(whole[3 + i].time, out[i].time)
      assert.are.same(whole[3 + i].records, out[i].records, "batch " .. (3 + i) .. " after the fallback")
    end
    assert.is_truthy(err:find(newest, 1, true), "stderr names the damaged file: " .. err)
    for _, w in ipairs(expect_words) do
      assert.is_truthy(err:find(w, 1, true), ("stderr says %q: %s"):format(w, err))
    end
    assert.is_truthy(err:find("older checkpoint", 1, true), "stderr says an older one is used: " .. err)
    -- The restarted job wrote 5 more checkpoints: the damaged file is still there (pruning
    -- never deletes what it cannot read), beside the 3 newest good ones.
    local after = checkpoint_files(dir)
    assert.are.equal(4, #after, "3 good generations and the damaged one: " .. table.concat(after, " "))
    assert.are.equal(newest, after[1], "the damaged file is kept")
    for i = 2, 4 do assert.is_truthy(core.ckpt_read(after[i]), after[i] .. " is readable") end
  end

  local function read_all(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
  end

  local function write_all(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
  end

  it("a corrupt newest checkpoint (one byte flipped) falls back to the previous generation", function()
    check_fallback(function(path)
      local s = read_all(path)
      local at = 32 + math.floor((#s - 32) / 2) -- in the payload, after the 32-byte header
      write_all(path, s:sub(1, at) .. string.char(bit.bxor(s:byte(at + 1), 0x10)) .. s:sub(at + 2))
    end, { "corrupt", "checksum" })
  end)

  it("a truncated newest checkpoint falls back to the previous generation", function()
    check_fallback(function(path)
      local s = read_all(path)
      write_all(path, s:sub(1, math.floor(#s / 2)))
    end, { "truncated" })
  end)

  it("a newest checkpoint cut inside its header falls back to the previous generation", function()
    check_fallback(function(path)
      write_all(path, read_all(path):sub(1, 10))
    end, { "truncated" })
  end)
end)

-- Issue 14: when no checkpoint could be read (every file's format version changed, as an
-- upgrade could) the job said "using an older checkpoint" for each, started from zero, and
-- pruned the files it could not read; after a truncated newest file, pruning kept it and
-- deleted a good one.
describe("unreadable checkpoints", function()
  local function read_all(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
  end
  local function write_all(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
  end
  -- Damage kinds, as done to a file: byte 8 is the header's format version (uint32, LE).
  local function set_version(path, v)
    local s = read_all(path)
    write_all(path, s:sub(1, 8) .. string.char(v) .. s:sub(10))
  end
  local function truncate(path)
    local s = read_all(path)
    write_all(path, s:sub(1, #s - 3))
  end
  local function flip(path)
    local s = read_all(path)
    write_all(path, s:sub(1, -2) .. string.char(bit.bxor(s:byte(-1), 1)))
  end

  -- Generations 1..n, each a checkpoint document as M.write encodes it (time = gen seconds).
  local function write_gens(dir, n)
    for g = 1, n do
      assert(core.ckpt_write(dir, g, buffer.encode({ format = checkpoint.FORMAT, time = g * 1000,
        batch_ms = 1000, zero_time = 0, sources = {}, states = {}, driver = {} })))
    end
  end
  local function gens_in(dir)
    local out = {}
    for i, path in ipairs(checkpoint_files(dir)) do out[i] = tonumber(path:match("(%d+)$")) end
    return out
  end
  -- Runs fn with io.stderr captured; returns what was written and fn's results.
  local function quiet(fn)
    local real, written = io.stderr, {}
    io.stderr = { write = function(self, ...)
      for i = 1, select("#", ...) do written[#written + 1] = tostring(select(i, ...)) end
      return self
    end, flush = function(self) return self end }
    local res = { pcall(fn) }
    io.stderr = real
    if not res[1] then error(res[2], 0) end
    return table.concat(written), res[2], res[3], res[4]
  end

  it("a directory without checkpoint files gives plain nil (a first start)", function()
    local dir = ckpt_dir()
    local doc0, err0 = checkpoint.read_newest(dir)
    assert.is_nil(doc0)
    assert.is_nil(err0)
    -- Unrelated files and temp files of an interrupted write are not checkpoints.
    write_all(dir .. "/notes.txt", "x")
    write_all(dir .. "/checkpoint-00000000000000000004.tmp", "half")
    local doc, err = checkpoint.read_newest(dir)
    assert.is_nil(doc)
    assert.is_nil(err)
  end)

  it("when every file's format version changed, read_newest is an error naming each file, and nothing is deleted", function()
    local dir = ckpt_dir()
    write_gens(dir, 3)
    local files = checkpoint_files(dir)
    for _, path in ipairs(files) do set_version(path, 2) end
    local said, doc, err = quiet(function() return checkpoint.read_newest(dir) end)
    assert.is_nil(doc)
    assert.is_string(err, "an error, not a fresh start")
    for _, path in ipairs(files) do
      assert.is_truthy(err:find(path .. " has an unknown format version 2 (this dstream reads version 1)", 1, true),
        "the error names " .. path .. " and what is wrong: " .. err)
    end
    assert.is_truthy(err:find("To start afresh, remove " .. dir .. " or use another checkpoint directory", 1, true), err)
    assert.is_falsy(said:find("older checkpoint", 1, true), "no 'using an older checkpoint': " .. said)
    -- A checkpoint written now (the prune of M.write) deletes none of them.
    local written = quiet(function() return checkpoint.prune(dir) end)
    assert.are.same(files, checkpoint_files(dir), "pruning deleted an unreadable file")
    assert.is_truthy(written:find(files[1], 1, true), "prune reports what it keeps: " .. written)
  end)

  it("names what is wrong with each kind of damage: truncated, corrupt, undecodable, other format", function()
    local dir = ckpt_dir()
    write_gens(dir, 3)
    assert(core.ckpt_write(dir, 4, "not a string.buffer encoding"))
    assert(core.ckpt_write(dir, 5, buffer.encode({ format = checkpoint.FORMAT + 1, time = 5000 })))
    local files = checkpoint_files(dir)
    truncate(files[1])
    flip(files[2])
    set_version(files[3], 7)
    local _, doc, err = quiet(function() return checkpoint.read_newest(dir) end)
    assert.is_nil(doc)
    assert.is_string(err)
    local want = {
      files[1] .. " is truncated", files[2] .. " is corrupt (checksum mismatch)",
      files[3] .. " has an unknown format version 7", files[4] .. " cannot be decoded",
      files[5] .. " holds checkpoint data of format 2 (this dstream reads format 1)",
    }
    for _, w in ipairs(want) do assert.is_truthy(err:find(w, 1, true), ("%q in: %s"):format(w, err)) end
    assert.are.same(files, checkpoint_files(dir))
  end)

  it("a readable older file is used, the unreadable newer ones reported", function()
    local dir = ckpt_dir()
    write_gens(dir, 3)
    local files = checkpoint_files(dir)
    set_version(files[3], 2)
    truncate(files[2])
    local said, doc, gen = quiet(function() return checkpoint.read_newest(dir) end)
    assert.are.equal(1, gen)
    assert.are.equal(1000, doc.time)
    assert.is_truthy(said:find(files[3], 1, true) and said:find(files[2], 1, true), said)
    assert.is_truthy(said:find("using an older checkpoint", 1, true), said)
  end)

  it("checkpoints refused by accept are not unreadable: plain nil, as before", function()
    local dir = ckpt_dir()
    write_gens(dir, 2)
    set_version(checkpoint_files(dir)[2], 2)
    local said, doc, err = quiet(function()
      return checkpoint.read_newest(dir, function() return false, "its offsets are ahead" end)
    end)
    assert.is_nil(doc)
    assert.is_nil(err)
    assert.is_truthy(said:find("is skipped: its offsets are ahead", 1, true), said)
  end)

  it("prune keeps the newest 3 readable generations and every unreadable file", function()
    local dir = ckpt_dir()
    write_gens(dir, 6)
    local files = checkpoint_files(dir)
    truncate(files[6]) -- the newest
    flip(files[1])     -- the oldest
    write_all(dir .. "/checkpoint-00000000000000000009.tmp", "left by a crash")
    local _, deleted = quiet(function() return checkpoint.prune(dir) end)
    assert.are.same({ 1, 3, 4, 5, 6 }, gens_in(dir))
    assert.are.same({ files[2] }, deleted)
    assert.is_falsy(H.exists(dir .. "/checkpoint-00000000000000000009.tmp"))
    -- Again (the files it checked are not read again unless they change): the same.
    quiet(function() return checkpoint.prune(dir) end)
    assert.are.same({ 1, 3, 4, 5, 6 }, gens_in(dir))
    -- A good file damaged since it was checked is seen as damaged: a new generation comes,
    -- and the damaged one stays while the 3 newest readable ones are 4, 5 and 7.
    flip(files[3])
    assert(core.ckpt_write(dir, 7, buffer.encode({ format = checkpoint.FORMAT, time = 7000 })))
    quiet(function() return checkpoint.prune(dir) end)
    assert.are.same({ 1, 3, 4, 5, 6, 7 }, gens_in(dir))
    assert(core.ckpt_write(dir, 8, buffer.encode({ format = checkpoint.FORMAT, time = 8000 })))
    quiet(function() return checkpoint.prune(dir) end)
    assert.are.same({ 1, 3, 5, 6, 7, 8 }, gens_in(dir))
  end)
end)
