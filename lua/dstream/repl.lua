-- dstream/repl.lua: a plain line-reading prompt with a context `ctx` ready.
-- (Line editing, history and completion come with the interactive REPL.)
local dstream = require("dstream")

local M = {}

local function show(...)
  local n = select("#", ...)
  if n == 0 then return end
  local parts = {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  print(table.concat(parts, "\t"))
end

function M.run()
  rawset(_G, "ctx", dstream.context { batch = "1s" })
  io.stdout:write("dstream ", dstream.version, " - a context `ctx` is ready; Ctrl-D quits\n")
  local pending = ""
  while true do
    io.stdout:write(pending == "" and "> " or ">> ")
    io.stdout:flush()
    local line = io.stdin:read("*l")
    if not line then break end
    local code = pending .. line
    local fn, err = loadstring("return " .. code, "=stdin")
    if not fn then fn, err = loadstring(code, "=stdin") end
    if not fn and err:match("<eof>$") then
      pending = code .. "\n"
    else
      pending = ""
      if not fn then
        print(err)
      else
        local res = { xpcall(fn, debug.traceback) }
        if res[1] then show(unpack(res, 2, table.maxn(res))) else print(res[2]) end
      end
    end
  end
  io.stdout:write("\n")
end

return M
