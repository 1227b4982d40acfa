-- dstream/jitopt.lua: LuaJIT's -j and -O command-line switches, applied to any Lua state.
-- The driver applies them when it parses its command line; each worker replays the same list
-- at boot, so `dstream -jv job.lua` shows the traces of the per-record loops too.
local M = {}

-- cmd is what followed "-j" ("v", "dump=+rs", "off") or "-O" ("O3", "O-loop").
function M.apply(cmd)
  if cmd:sub(1, 1) == "O" then
    local opts = {}
    for opt in cmd:sub(2):gmatch("[^,]+") do opts[#opts + 1] = opt end
    if #opts == 0 then opts[1] = "3" end
    jit.opt.start(unpack(opts))
    return
  end
  local name, arg = cmd:match("^([%w_]+)=?(.*)$")
  if not name then error("bad -j option '" .. cmd .. "'", 0) end
  if jit[name] and type(jit[name]) == "function" and name ~= "attach" then
    jit[name]()
    return
  end
  local ok, mod = pcall(require, "jit." .. name)
  if not ok or type(mod) ~= "table" or not mod.start then
    error("unknown LuaJIT control command '-j" .. cmd .. "'", 0)
  end
  if arg ~= "" then mod.start(arg) else mod.start() end
end

return M
