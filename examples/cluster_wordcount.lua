-- examples/cluster_wordcount.lua: cluster mode, one stateless job on three processes.
--
--   dstream examples/cluster_wordcount.lua
--
-- Starts an embedded Kafka broker (topic "words", 6 partitions) in this process, then three
-- processes of the same job (this file again, with --member): each has
-- context{ cluster = "example-wordcount" }, so its kafka_stream joins consumer group
-- "example-wordcount" and the group shares the six partitions out, two each. While they run,
-- this process produces lines; each member counts the words of the records it owns, per batch
-- (reduce_by_key runs per process: a word read by two members is counted by each), prints
-- which partitions it owns when that changes, and its totals when it stops, after ~10 s. Their
-- lines are printed here, member by member: each word of partition p is "p<p>" and one of the
-- six words, so the totals show who read what. The cluster is made of processes on one machine; on
-- several machines, run `dstream job.lua` with the same cluster name on each against a real
-- broker.
local dstream = require("dstream")
local kafka = require("dstream.kafka")
-- The members' setup, shared with the other cluster examples (examples/lib/).
package.path = (arg[0]:match("^(.*)/") or ".") .. "/lib/?.lua;" .. package.path
local demo = require("cluster_demo")

local APP = "example-wordcount"

if arg[1] == "--member" then
  -- One member, in cluster APP: its context (one worker) and its input, "words".
  local ctx, lines, name = demo.member(dstream, { workers = 1, cluster = APP })
  local last_owned, totals = nil, {}
  lines:flat_map(function(line) return line:gmatch("%S+") end)
    :map(function(w) return w, 1 end)
    :reduce_by_key(function(a, b) return a + b end)
    :foreach_rdd(function(rdd)
      local st = lines:kafka_stats()
      local owned = {}
      for _, o in ipairs(st.assigned or {}) do owned[#owned + 1] = o.topic .. "[" .. o.partition .. "]" end
      owned = table.concat(owned, ",")
      if owned ~= last_owned then
        print(string.format("%s owns %s", name, owned ~= "" and owned or "nothing yet"))
        last_owned = owned
      end
      -- This member's own totals, on its driver (a plain table: no keyed state in cluster mode).
      for _, kv in ipairs(rdd:collect()) do totals[kv[1]] = (totals[kv[1]] or 0) + kv[2] end
      io.stdout:flush()
    end)
  ctx:start()
  ctx:await_termination(10)
  ctx:stop { graceful = true }
  local shown = {}
  for w, n in pairs(totals) do shown[#shown + 1] = w .. "=" .. n end
  table.sort(shown)
  print(string.format("%s counted %s", name, table.concat(shown, " ")))
  return
end

-- The driver of the example: a broker, three members, a producer.
local mock = kafka.mock_cluster { brokers = 1, topics = { words = 6 } }
local brokers = mock:bootstrap()
local self_path, interpreter = arg[0], arg[-1] or "dstream"
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir) == 0 or true)
for m = 1, 3 do
  -- In the background (&): the three run at once and join the group together.
  os.execute(string.format("%q %q --member %q member%d > %s/member%d.out 2>&1 &",
    interpreter, self_path, brokers, m, dir, m))
end
local producer = kafka.producer { brokers = brokers }
local words = { "kafka", "group", "member", "partition", "stream", "batch" }
local ffi = require("ffi")
pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")
-- 8 s of lines: "w<p> ..." into partition p, so who counted what shows who owns what.
for i = 1, 40 do
  local p = (i - 1) % 6
  assert(producer:send("words", words[p + 1] .. " " .. words[p + 1] .. " p" .. p, nil, p))
  assert(producer:flush(5000))
  ffi.C.poll(nil, 0, 200)
end
producer:close()
-- The members stop 10 s after their start and print their totals then: wait for those lines
-- (20 s at most: a loaded machine can make a member's graceful stop take a while).
local function output(m)
  local fh = io.open(string.format("%s/member%d.out", dir, m))
  local text = fh and fh:read("*a") or ""
  if fh then fh:close() end
  return text
end
for _ = 1, 200 do
  local done = 0
  for m = 1, 3 do
    if output(m):find("counted", 1, true) then done = done + 1 end
  end
  if done == 3 then break end
  ffi.C.poll(nil, 0, 100)
end
for m = 1, 3 do
  local text = output(m)
  io.write(text ~= "" and text or ("member" .. m .. ": no output\n"))
  os.remove(string.format("%s/member%d.out", dir, m))
end
os.remove(dir)
mock:close()
