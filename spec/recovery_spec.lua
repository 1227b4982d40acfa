-- Recovery at the settings a user gets: the default checkpoint_interval (10 s, so ten 1 s
-- batches), in process, on a manual clock. A crash is an abrupt stop (no final checkpoint),
-- which leaves the directory as a SIGKILL would. The first checkpoint is written inside
-- ctx:start(); batches logged after the newest checkpoint run again at the restart with their
-- own times and input, so across a crash every batch time has one set of records and every
-- input record is in exactly one batch time; a text_file_stream half way through a file under
-- max_rate goes on from where its last logged batch left it. Also: get_or_create tells its
-- function whether a checkpoint will be restored, and batch intervals are whole milliseconds.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")

local dstream = require("dstream")

local tmp = H.scratch_dirs(after_each)
local checkpoint_files = H.checkpoint_files

-- Runs the loop for `s` seconds (receivers read meanwhile).
local function wait(ctx, s) ctx:await_termination(s) end

-- Batches seen by foreach_rdd across runs: by time, the sorted records of each run of it.
local function recorder(seen)
  return function(rdd, time)
    seen[time] = seen[time] or {}
    local runs = seen[time]
    runs[#runs + 1] = H.sorted(rdd:collect())
  end
end

-- Every batch time's runs hold the same records, and the records of all batch times are
-- `want` (sorted), each once.
local function assert_exactly_once(seen, want)
  local all = {}
  for time, runs in pairs(seen) do
    for i = 2, #runs do
      assert.are.same(runs[1], runs[i], ("batch %d ms ran again with other records"):format(time))
    end
    for _, r in ipairs(runs[1]) do all[#all + 1] = r end
  end
  assert.are.same(want, H.sorted(all))
end

describe("recovery at the default checkpoint_interval", function()
  it("writes the first checkpoint inside ctx:start(), before any batch", function()
    local dir = tmp()
    local ctx = dstream.context { batch = "1s", clock = "manual", workers = 1, checkpoint = dir }
    ctx:queue_stream({ { 1 } }):print()
    assert.are.same({}, checkpoint_files(dir))
    ctx:start()
    assert.are.equal(1, #checkpoint_files(dir))
    ctx:stop()
  end)

  for _, workers in ipairs({ 1, 4 }) do
    it("re-runs the batches after the newest checkpoint with their times and input (" .. workers .. " workers)", function()
      local dir = tmp()
      local input = {}
      for b = 1, 14 do input[b] = { "w" .. (b % 3), "w" .. (b % 5), "x" } end
      local seen, states = {}, {}
      local function build(recovering_seen)
        return dstream.get_or_create(dir, function(recovering)
          recovering_seen[#recovering_seen + 1] = recovering
          local ctx = dstream.context { batch = "1s", clock = "manual", workers = workers }
          local words = ctx:queue_stream(H.deep_copy(input))
          words:foreach_rdd(recorder(seen))
          words:map(function(w) return w, 1 end)
            :update_state_by_key(function(values, total)
              total = total or 0
              for i = 1, #values do total = total + values[i] end
              return total
            end)
            :name("totals")
            :foreach_rdd(function(rdd, time) states[time] = H.to_map(rdd:collect()) end)
          return ctx
        end)
      end
      local told = {}
      -- Run 1: 4 batches, crash (no checkpoint but the one at start).
      local ctx = build(told)
      ctx:start()
      ctx:advance(4)
      ctx:stop()
      assert.are.equal(1, #checkpoint_files(dir), "only the checkpoint at start")
      -- Run 2: re-runs 1..4, then 8 more (batch 10 writes a checkpoint), crash.
      ctx = build(told)
      assert.is_true(ctx:recovering())
      ctx:start()
      assert.are.equal(0, ctx.recovered_from, "restored from the checkpoint at start")
      ctx:advance(8)
      ctx:stop()
      -- Run 3: restored from batch 10's checkpoint, re-runs 11 and 12, then the rest.
      ctx = build(told)
      ctx:start()
      assert.are.equal(10000, ctx.recovered_from)
      ctx:advance(2)
      ctx:stop { graceful = true }
      assert.are.same({ false, true, true }, told, "get_or_create's recovering argument")
      local want = {}
      for _, b in ipairs(input) do for _, w in ipairs(b) do want[#want + 1] = w end end
      assert_exactly_once(seen, H.sorted(want))
      for b = 1, 4 do assert.are.equal(2, #seen[b * 1000], "batch " .. b .. " ran twice") end
      -- The totals of the last batch are those of one run without crashes.
      local totals = {}
      for _, w in ipairs(want) do totals[w] = (totals[w] or 0) + 1 end
      assert.are.same(totals, states[14000])
    end)
  end

  it("resumes a file half read under max_rate exactly, and never reads a file twice", function()
    local dir, inp = tmp(), tmp()
    local want = {}
    for f = 1, 3 do
      local lines = {}
      for l = 1, 400 do
        lines[l] = ("f%d-%d"):format(f, l)
        want[#want + 1] = lines[l]
      end
      H.write_file(inp .. "/f" .. f .. ".txt", table.concat(lines, "\n") .. "\n")
    end
    local seen = {}
    local function build()
      return dstream.get_or_create(dir, function()
        local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2 }
        ctx:text_file_stream(inp, { new_files_only = false, max_rate = 1500 })
          :foreach_rdd(recorder(seen))
        return ctx
      end)
    end
    local function lines_seen()
      local n = 0
      for _, runs in pairs(seen) do n = n + #runs[1] end
      return n
    end
    -- Run 1: about 600 lines in 3 batches (a file half read), crash.
    local ctx = build()
    ctx:start()
    for _ = 1, 3 do
      wait(ctx, 0.15)
      ctx:advance(1)
    end
    ctx:stop()
    local first = lines_seen()
    assert.is_true(first > 0 and first < 1200, "run 1 stopped inside the input: " .. first)
    -- Run 2: re-runs those batches, then reads the rest.
    ctx = build()
    ctx:start()
    local deadline = os.time() + 20
    repeat
      wait(ctx, 0.2)
      ctx:advance(1)
    until lines_seen() >= #want or os.time() > deadline
    wait(ctx, 0.3)
    ctx:advance(2)
    ctx:stop { graceful = true }
    assert_exactly_once(seen, H.sorted(want))
  end)

  it("writes checkpoints when the batch interval is not a whole number of milliseconds", function()
    for _, batch in ipairs({ 1 / 3, 1.0001 }) do
      local dir = tmp()
      local ctx = dstream.context { batch = batch, clock = "manual", workers = 1, checkpoint = dir }
      assert.are.equal(math.floor(batch * 1000 + 0.5), ctx.batch_ms)
      ctx:queue_stream({}):count():foreach_rdd(function() end)
      ctx:start()
      local per_checkpoint = ctx.checkpoint_ms / ctx.batch_ms
      ctx:advance(per_checkpoint)
      ctx:stop()
      assert.are.equal(2, #checkpoint_files(dir), "the checkpoint at start and one after "
        .. per_checkpoint .. " batches of " .. ctx.batch_ms .. " ms")
    end
  end)
end)
