-- dstream/cli.lua: the interpreter's Lua side: error messages and -j options.
local jitopt = require("dstream.jitopt")

local M = {}

-- Error handler of the script's top-level call. Errors from dstream itself already say where
-- and what; a Lua error gets the script's traceback only at --log-level debug.
function M.error_handler(err)
  if err == nil then return nil end -- error() with no value: a silent failure (busted uses it)
  if type(err) ~= "string" then
    err = "(error object is a " .. type(err) .. " value: " .. tostring(err) .. ")"
  end
  local opts = require("dstream.options")
  if opts["log-level"] == "debug" then return debug.traceback(err, 2) end
  return err
end

function M.apply_jit(cmd)
  jitopt.apply(cmd)
end

return M
