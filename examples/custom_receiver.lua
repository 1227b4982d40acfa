-- custom_receiver.lua: Spark's CustomReceiver example in dstream: a source written in Lua (a
-- line-oriented TCP client over LuaJIT's FFI sockets, on a thread of its own) and a word count
-- of each batch. The Spark (Scala) lines it ports are the `--|` comments.
--   dstream examples/custom_receiver.lua HOST PORT [SECONDS]   read a server (Ctrl-C stops)
--   dstream examples/custom_receiver.lua                       start a tiny server (python3)
-- that sends a verse to each of two connections and closes them; the job stops after 4 s.
local dstream = require("dstream")

local host, port, seconds = arg[1], tonumber(arg[2]), tonumber(arg[3])
local verse = { "the quick brown fox", "jumps over the lazy dog", "the dog sleeps" }
local server
if not host then -- the demo's server: it prints its port, serves two connections, exits
  server = io.popen([[python3 -c '
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1); s.settimeout(10)
print(s.getsockname()[1], flush=True)
for _ in range(2):
    c, _ = s.accept(); c.sendall(sys.argv[1].encode()); c.close()
' ']] .. table.concat(verse, "\n") .. "\n'")
  host, port, seconds = "127.0.0.1", tonumber(server:read("*l")), 4
end
assert(port, "usage: dstream examples/custom_receiver.lua [HOST PORT [SECONDS]]")

--| class CustomReceiver(host: String, port: Int)
--|   extends Receiver[String](StorageLevel.MEMORY_AND_DISK_2) with Logging {
-- A receiver is a table: on_start and on_stop, and the fields they read (host, port). It is
-- shipped to its own thread and Lua state, so everything it uses is required inside.
local custom_receiver = {
  host = host, port = port,

  --| def onStart() { new Thread("Socket Receiver") { override def run() { receive() } }.start() }
  -- on_start has the thread to itself: it is receive(). It must poll self:is_stopped().
  on_start = function(self)
    local ffi = require("ffi")
    pcall(ffi.cdef, [[
      struct ds_ex_sockaddr_in { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
      struct ds_ex_pollfd { int fd; short events; short revents; };
      int socket(int domain, int type, int protocol);
      int connect(int fd, const void *addr, uint32_t len);
      int poll(struct ds_ex_pollfd *fds, unsigned long n, int timeout_ms);
      long recv(int fd, void *buf, size_t n, int flags);
      int close(int fd);
      int inet_pton(int af, const char *src, void *dst);
      char *strerror(int errnum);
    ]])
    local C, AF_INET, SOCK_STREAM, POLLIN = ffi.C, 2, 1, 1
    --| logInfo("Connecting to " + host + ":" + port)
    --| socket = new Socket(host, port)
    local addr = ffi.new("struct ds_ex_sockaddr_in")
    addr.family = AF_INET
    addr.port = bit.bor(bit.rshift(self.port, 8), bit.lshift(bit.band(self.port, 255), 8)) -- htons
    if C.inet_pton(AF_INET, self.host == "localhost" and "127.0.0.1" or self.host, ffi.cast("void *", ffi.cast("char *", addr) + 4)) ~= 1 then
      error("not an IPv4 address: " .. self.host) -- raised: restarted with backoff, and logged
    end
    local fd = C.socket(AF_INET, SOCK_STREAM, 0)
    if C.connect(fd, addr, ffi.sizeof(addr)) ~= 0 then
      local why = ffi.string(C.strerror(ffi.errno()))
      C.close(fd)
      --| case e: java.net.ConnectException => restart("Error connecting to " + host + ":" + port, e)
      self:restart("Error connecting to " .. self.host .. ":" .. self.port .. ": " .. why)
    end
    --| val reader = new BufferedReader(new InputStreamReader(socket.getInputStream(), UTF_8))
    --| userInput = reader.readLine()
    --| while(!isStopped && userInput != null) { store(userInput); userInput = reader.readLine() }
    local buf, size = ffi.new("char[?]", 65536), 65536
    local pfd = ffi.new("struct ds_ex_pollfd[1]", { { fd, POLLIN, 0 } })
    local rest = ""
    while not self:is_stopped() do
      if C.poll(pfd, 1, 100) > 0 then -- 100 ms at most, so is_stopped() is seen
        local n = tonumber(C.recv(fd, buf, size, 0))
        if n <= 0 then break end -- the server closed the connection (or it broke)
        local text = rest .. ffi.string(buf, n)
        local from = 1
        for line, next_from in text:gmatch("([^\n]*)\n()") do
          self:store((line:gsub("\r$", ""))) -- buffered: one C call per chunk, not per line
          from = next_from
        end
        rest = text:sub(from)
      end
    end
    if rest ~= "" then self:store(rest) end -- a last line without its newline
    --| reader.close(); socket.close()
    C.close(fd)
    --| restart("Trying to connect again")
    if not self:is_stopped() then self:restart("Trying to connect again") end
  end,

  --| def onStop() { }  // the thread calling receive() stops by itself once isStopped()
  on_stop = function() end,
}

--| val ssc = new StreamingContext(sparkConf, Seconds(1))
local ctx = dstream.context { batch = "1s", name = "custom_receiver" }
--| val lines = ssc.receiverStream(new CustomReceiver(args(0), args(1).toInt))
local lines = ctx:receiver_stream(custom_receiver, { name = "lines" })
--| val words = lines.flatMap(_.split(" "))
--| val wordCounts = words.map(x => (x, 1)).reduceByKey(_ + _)
--| wordCounts.print()
local words = lines:flat_map(function(line) return line:gmatch("%S+") end)
local word_counts = words:map(function(w) return w, 1 end):reduce_by_key(function(a, b) return a + b end)
word_counts:print()
local total = 0
words:count():foreach_rdd(function(rdd) total = total + (rdd:first() or 0) end)
--| ssc.start(); ssc.awaitTermination()
ctx:start()
ctx:await_termination(seconds)
ctx:stop { graceful = true }
print(string.format("total: %d words", total))
if server then
  server:close()
  local expected = 0
  for _, line in ipairs(verse) do for _ in line:gmatch("%S+") do expected = expected + 1 end end
  print(string.format("expected: %d words (the verse, from each of two connections)", 2 * expected))
end
