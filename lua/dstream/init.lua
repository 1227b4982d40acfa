-- dstream: micro-batch stream processing. The module users require.
--   local dstream = require("dstream")
--   local ctx = dstream.context { batch = "1s" }
local context = require("dstream.context")
local core = require("dstream.core")
local util = require("dstream.util")

local M = {
  version = core.version,
}

-- Contexts and actions belong to the driver: a closure running on a worker that calls them
-- gets this error on its line (before, it touched the driver's event loop from its thread).
local function driver_only(who)
  if core.on_worker() then
    util.raise(who .. ": contexts and actions run on the driver; this closure runs on a worker")
  end
end

-- Creates a streaming context; see docs/guide.md for the settings.
function M.context(opts)
  driver_only("dstream.context")
  return context.new(opts)
end

-- The context fn(recovering) builds, restarted from the newest good checkpoint in `dir` when
-- there is one (at ctx:start()). fn always runs, since checkpoints hold data, never code;
-- `recovering` tells it whether a checkpoint will be restored (Spark runs its function only
-- when there is none: do there what only a fresh start should do).
function M.get_or_create(dir, fn)
  driver_only("get_or_create")
  if type(dir) ~= "string" or dir == "" then util.raise("get_or_create: expected a checkpoint directory") end
  if type(fn) ~= "function" then util.raise("get_or_create: expected a function that builds the context") end
  local gens = core.ckpt_list(dir)
  local ctx = fn(gens ~= nil and #gens > 0)
  if getmetatable(ctx) ~= context.Context then
    util.raise("get_or_create: the function must return the context it built, got " .. type(ctx))
  end
  ctx.checkpoint_dir = dir
  return ctx
end

-- Stops every context still running; the interpreter calls it before it exits.
function M.shutdown()
  context.shutdown()
end

return M
