-- text_file_stream remembers names for a window (option `remember`, as Spark's
-- minRememberDuration), not forever: a file is new when its name is not remembered and its
-- ctime is not below the source's threshold (the last listing's time minus the window). A
-- checkpoint carries the threshold and only the names inside the window, so it stays small
-- however many files went through; a restart after the window does not read old files again,
-- and reads the files moved in while the job was down. Checkpoints of older dstreams (a list
-- of names, or { done = names }) still restore. Real time passes here (ctimes are real), on a
-- manual batch clock.
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")

local dstream = require("dstream")

local tmp = H.scratch_dirs(after_each)

local checkpoint = require("dstream.state.checkpoint")

-- The file source's position in the newest checkpoint of `dir`.
local function saved_position(dir)
  local doc = assert(checkpoint.read_newest(dir))
  local _, pos = next(doc.sources)
  return pos
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- Moves in n files <prefix>00001.txt ... with one line each, their name without ".txt";
-- returns the names. Written next to the directory, then renamed, as producers should.
local function put(dir, prefix, n)
  local names = {}
  for i = 1, n do
    local name = ("%s%05d"):format(prefix, i)
    H.write_file(dir .. "-" .. name, name .. "\n")
    assert(os.rename(dir .. "-" .. name, dir .. "/" .. name .. ".txt"))
    names[i] = name
  end
  return names
end

local core_now = require("dstream.core").now_ms

-- Lets the real clock pass (receivers list the directory meanwhile).
local function wait(ctx, s) ctx:await_termination(s) end

describe("text_file_stream remember", function()
  it("a checkpoint after many files carries only the names inside the window", function()
    local inp, ck = tmp(), tmp()
    local ctx = dstream.context { batch = "1s", clock = "manual", workers = 1, checkpoint = ck }
    local lines = 0
    local s = ctx:text_file_stream(inp, { remember = "3s" })
    s:foreach_rdd(function(rdd) lines = lines + rdd:count() end)
    ctx:start()
    -- Counts the names that cross from the source into Lua (its methods are shared by every
    -- source: restored at the end).
    local methods = getmetatable(s.source).__index
    local take_parts, remembered, crossed = methods.take_parts, methods.remembered, 0
    methods.take_parts = function(...)
      local parts, threshold = take_parts(...)
      crossed = crossed + #parts
      return parts, threshold
    end
    methods.remembered = function(...)
      local names = remembered(...)
      crossed = crossed + count(names)
      return names
    end
    local ok, err = pcall(function()
      local started = core_now()
      local names = put(inp, "a", 1000)
      ctx:advance(1)
      assert(core_now() - started < 2500, "moving 1000 files in took most of the window")
      assert.are.equal(1000, lines)
      assert.are.equal(1000, crossed)
      assert.are.equal(1000, count(s:position().remembered))
      -- Seals of an empty directory hand Lua nothing, however many names the source holds.
      ctx:advance(5)
      assert.are.equal(1000, crossed)
      return names
    end)
    methods.take_parts, methods.remembered = take_parts, remembered
    assert(ok, err)
    local names = err
    -- Read and removed: once outside the window the source forgets them as well (within two
    -- windows: it sweeps its table once the threshold has moved a window).
    for _, name in ipairs(names) do assert(os.remove(inp .. "/" .. name .. ".txt")) end
    local deadline = core_now() + 15000
    repeat wait(ctx, 0.5) until s.source:stats().forgotten == 1000 or core_now() > deadline
    put(inp, "b", 1)
    ctx:advance(2)
    assert.are.equal(1001, lines)
    local st = s.source:stats()
    assert.are.equal(1, st.remembered)
    assert.are.equal(1000, st.forgotten)
    ctx:stop { graceful = true }
    local pos = saved_position(ck)
    assert.are.same({ "b00001.txt" }, H.sorted((function()
      local l = {}
      for name in pairs(pos.remembered) do l[#l + 1] = name end
      return l
    end)()))
    assert.is_number(pos.threshold)
    assert.is_true(pos.remembered["b00001.txt"] >= pos.threshold)
  end)

  for _, graceful in ipairs({ true, false }) do
    local how = graceful and "a graceful stop" or "a crash"
    it("after " .. how .. " past the window, old files are not read again and files moved in while down are", function()
      local inp, ck = tmp(), tmp()
      local seen = {} -- [time] = { records of each run }
      local function build()
        return dstream.get_or_create(ck, function()
          local ctx = dstream.context { batch = "1s", clock = "manual", workers = 2 }
          ctx:text_file_stream(inp, { remember = "1s" }):foreach_rdd(function(rdd, time)
            seen[time] = seen[time] or {}
            table.insert(seen[time], H.sorted(rdd:collect()))
          end)
          return ctx
        end)
      end
      put(inp, "old", 5) -- there at the first start: never read
      local ctx = build()
      ctx:start()
      local want = put(inp, "a", 50)
      ctx:advance(1)
      wait(ctx, 1.3)
      ctx:advance(1) -- sealed by a listing after the window: the a files are old now
      if graceful then
        ctx:stop { graceful = true }
        assert.are.same({}, saved_position(ck).remembered)
      else
        ctx:stop() -- no checkpoint but the one written at start: the batches are logged
      end
      for _, name in ipairs(put(inp, "b", 3)) do want[#want + 1] = name end -- while down
      ctx = build()
      ctx:start()
      wait(ctx, 0.3)
      ctx:advance(2)
      ctx:stop { graceful = true }
      -- Each record in exactly one batch time; a batch run again has the same records.
      local all = {}
      for _, runs in pairs(seen) do
        for i = 2, #runs do assert.are.same(runs[1], runs[i]) end
        for _, r in ipairs(runs[1]) do all[#all + 1] = r end
      end
      assert.are.same(H.sorted(want), H.sorted(all))
    end)
  end

  for _, form in ipairs({ "a list of names", "{ done = names }" }) do
    it("restores a position of an older dstream (" .. form .. ")", function()
      local inp = tmp()
      put(inp, "x", 2)
      local ctx = dstream.context { batch = "1s", clock = "manual", workers = 1 }
      local got = {}
      local s = ctx:text_file_stream(inp)
      s:foreach_rdd(function(rdd) for _, l in ipairs(rdd:collect()) do got[#got + 1] = l end end)
      local names = { "x00001.txt", "gone.txt" }
      s:restore(form == "a list of names" and names or { done = names })
      ctx:start()
      ctx:advance(1)
      -- x00002 is not in the old position: it arrived while the job was down.
      assert.are.same({ "x00002" }, got)
      local pos = s:position()
      assert.is_number(pos.remembered["x00001.txt"]) -- its ctime, looked up
      assert.is_nil(pos.remembered["gone.txt"])      -- no file: nothing to remember
      ctx:stop()
    end)
  end

  it("checks the option", function()
    local inp = tmp()
    for _, bad in ipairs({ "10ms", "31d", "soon", -1 }) do
      local ctx = dstream.context { batch = "1s", clock = "manual", workers = 1 }
      ctx:text_file_stream(inp, { remember = bad }):foreach_rdd(function() end)
      assert.has_error(function() ctx:start() end)
      pcall(ctx.stop, ctx)
    end
    local ok, err = pcall(function()
      local ctx = dstream.context { batch = "1s", clock = "manual", workers = 1 }
      ctx:text_file_stream(inp, { remember = "10ms" }):foreach_rdd(function() end)
      local ok2, e = pcall(ctx.start, ctx)
      pcall(ctx.stop, ctx)
      assert(not ok2)
      error(e, 0)
    end)
    assert.is_false(ok)
    assert.matches("remember", tostring(err))
    assert.matches("1s", tostring(err))
  end)
end)
