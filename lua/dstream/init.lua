-- dstream: micro-batch stream processing. The module users require.
--   local dstream = require("dstream")
--   local ctx = dstream.context { batch = "1s" }
local context = require("dstream.context")
local core = require("dstream.core")

local M = {
  version = core.version,
}

-- Creates a streaming context; see docs/guide.md for the settings.
function M.context(opts)
  return context.new(opts)
end

-- Stops every context still running; the interpreter calls it before it exits.
function M.shutdown()
  context.shutdown()
end

return M
