-- spec/e2e/jobs/socket_wal.lua: the lines of a TCP server saved as they come, with the
-- write-ahead log on, at the settings a user gets otherwise (batch 1 s, checkpoint_interval
-- 10 s), for spec/e2e/socket_wal_crash.sh.
--   dstream socket_wal.lua PORT CHECKPOINT_DIR OUT_PREFIX
-- Prints "ready recovered=<ms>|none" once started; a graceful stop on SIGTERM.
local dstream = require("dstream")

local port, checkpoint_dir, out = tonumber(arg[1]), arg[2], arg[3]
if not (port and checkpoint_dir and out) then
  error("usage: socket_wal.lua PORT CHECKPOINT_DIR OUT_PREFIX", 0)
end

local ctx = dstream.get_or_create(checkpoint_dir, function()
  local ctx = dstream.context { wal = true, name = "e2e-socket-wal" }
  ctx:socket_text_stream("127.0.0.1", port):save_as_text_files(out)
  return ctx
end)
ctx:start()
print("ready recovered=" .. (ctx.recovered_from and string.format("%d", ctx.recovered_from) or "none"))
io.stdout:flush()
ctx:await_termination()
