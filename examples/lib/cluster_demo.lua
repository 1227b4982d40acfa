-- examples/lib/cluster_demo.lua: what the cluster examples share, the part that stands in for
-- several machines: an embedded Kafka broker with the topics the job needs, three members (the
-- example's own file run again as `dstream --cluster APP FILE --member BROKERS NAME`), lines of
-- words produced for 4 s once they have joined, and each member's output once it is done.
local kafka = require("dstream.kafka")
local ffi = require("ffi")
pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")

local M = {}

local function sleep_ms(ms) ffi.C.poll(nil, 0, ms) end

-- "a=1 b=2": a table of counts, sorted by word.
function M.shown(counts)
  local list = {}
  for w, n in pairs(counts) do list[#list + 1] = w .. "=" .. n end
  table.sort(list)
  return table.concat(list, " ")
end

-- "1,4": the state partitions this process owns of a keyed stream (its kafka_stats().assigned).
function M.owned(stream)
  local parts = {}
  for _, o in ipairs(stream:kafka_stats().assigned or {}) do parts[#parts + 1] = o.partition end
  table.sort(parts)
  return table.concat(parts, ",")
end

-- member(dstream [, ctx_opts]): a member's context and its input, from the command line run()
-- gives it (`--member BROKERS NAME`; --cluster APP is on the command line too, or in ctx_opts):
-- 500 ms batches, 2 workers unless ctx_opts says otherwise, topic "words" from the earliest
-- offset. Returns ctx, lines, the member's name.
function M.member(dstream, ctx_opts)
  local brokers, name = arg[2], arg[3]
  local opts = { batch = "500ms", workers = 2, name = name }
  for k, v in pairs(ctx_opts or {}) do opts[k] = v end
  local ctx = dstream.context(opts)
  local lines = ctx:kafka_stream { brokers = brokers, topics = { "words" }, start = "earliest",
    -- A member that dies is noticed after its session timeout: short here, for the example.
    conf = { ["session.timeout.ms"] = 3000, ["heartbeat.interval.ms"] = 300 } }
  return ctx, lines, name
end

-- Prints a member's last line (what run() shows) and stops it gracefully.
function M.say_and_stop(ctx, text)
  print(text)
  io.stdout:flush()
  ctx:stop { graceful = true }
end

-- Runs a member's job until say_and_stop (or a signal) ends it.
function M.serve(ctx)
  ctx:start()
  ctx:await_termination()
end

local function read(path)
  local fh = io.open(path)
  local text = fh and fh:read("*a") or ""
  if fh then fh:close() end
  return text
end

-- run{ app, operator, partitions, words, extra, done }: topic "words" (6 partitions) and the
-- operator's repartition and changelog topics (`partitions` each; the embedded broker has no
-- admin API, so a job cannot make them itself); 40 lines of two of `words` (eight) plus
-- `extra` (when given) on every fourth; the members' outputs are printed once each holds `done` (at most
-- 20 s), then the job's initial state (`initial`, (word, count) pairs) when it has one, and what was
-- produced, to compare with them. With `stamp` (a function of the line's number), each line
-- ends with " t=<stamp(i)>", an event time in ms, and a last line "~ t=<flush>" (not counted)
-- moves the watermark on.
function M.run(opts)
  local app, name = opts.app, opts.app .. "-" .. opts.operator
  local mock = kafka.mock_cluster { brokers = 1, topics = { words = 6,
    [name .. "-repartition"] = opts.partitions, [name .. "-changelog"] = opts.partitions } }
  local brokers = mock:bootstrap()
  local self_path, interpreter = arg[0], arg[-1] or "dstream"
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. dir)
  local function out(m) return string.format("%s/member%d.out", dir, m) end
  local function pid_file(m) return string.format("%s/member%d.pid", dir, m) end
  for m = 1, 3 do
    -- In the background (&): the three run at once and join the group together.
    os.execute(string.format("%q --cluster %s --log-level error %q --member %q member%d > %s 2>&1 & echo $! > %s",
      interpreter, app, self_path, brokers, m, out(m), pid_file(m)))
  end
  -- Lines for 4 s once the members have joined (the embedded broker's first rebalance waits
  -- 3 s; a member that reads while the group rebalances may read records again: see the guide).
  os.execute("sleep 7")
  local producer, words, extra, produced = kafka.producer { brokers = brokers }, opts.words, opts.extra, {}
  for i = 1, 40 do
    local a, b = words[1 + (i - 1) % 8], words[1 + (i * 3) % 8]
    local stamp = opts.stamp and " t=" .. opts.stamp(i) or ""
    local third = extra and i % 4 == 0 -- (no extra word: every line is two words)
    assert(producer:send("words", a .. " " .. b .. (third and " " .. extra or "") .. stamp, nil, (i - 1) % 6))
    produced[a] = (produced[a] or 0) + 1
    produced[b] = (produced[b] or 0) + 1
    if third then produced[extra] = (produced[extra] or 0) + 1 end
    assert(producer:flush(5000))
    sleep_ms(100)
  end
  if opts.flush then
    assert(producer:send("words", "~ t=" .. opts.flush, nil, 0))
    assert(producer:flush(5000))
  end
  producer:close()
  for _ = 1, 200 do
    if read(out(1)):find(opts.done, 1, true) and read(out(2)):find(opts.done, 1, true)
      and read(out(3)):find(opts.done, 1, true) then break end
    sleep_ms(100)
  end
  for m = 1, 3 do
    local text = read(out(m))
    io.write(text ~= "" and text or ("member" .. m .. ": no output\n"))
    os.remove(out(m))
  end
  if opts.initial then -- (key, count) pairs
    local counts = {}
    for _, kv in ipairs(opts.initial) do counts[kv[1]] = kv[2] end
    print("initial " .. M.shown(counts))
  end
  print("produced " .. M.shown(produced))
  -- The members' graceful stops commit and leave the group: the broker stays until they have
  -- ended (10 s at most), or each would wait for a broker gone.
  for m = 1, 3 do
    local pid = read(pid_file(m)):match("%d+")
    for _ = 1, 100 do
      local alive = pid and os.execute("kill -0 " .. pid .. " 2>/dev/null")
      if alive ~= 0 and alive ~= true then break end -- (LuaJIT: 0 on success; Lua 5.2: true)
      sleep_ms(100)
    end
    os.remove(pid_file(m))
  end
  os.remove(dir)
  mock:close()
end

return M
