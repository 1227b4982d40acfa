-- dstream/state/driver_state.lua: values the driver keeps from batch to batch (a model that
-- foreach_rdd trains, a running figure), checkpointed with the job's state.
--
--   ctx:driver_state(name, save, restore)
--
-- save() returns the value as plain data (what string.buffer encodes: numbers, strings,
-- booleans, tables of those) and is called at every checkpoint, so the value saved is the one
-- after the last completed batch, in step with the sources' positions and the keyed state.
-- restore(value) is called once, inside ctx:start(), when the checkpoint being restored holds
-- a value under that name; batches logged after that checkpoint then run again and update it
-- as they did the first time. Values are matched by name, as named stateful streams are.
-- (Before this the same was only open to dstream's own operators: the watermark of event time
-- is kept this way.)
local buffer = require("string.buffer")
local util = require("dstream.util")

local M = {}

function M.register(ctx, name, save, restore)
  if type(name) ~= "string" or name == "" then
    util.raise("driver_state: the name must be a non-empty string, got " .. tostring(name))
  end
  util.check_function(save, "driver_state (save)")
  util.check_function(restore, "driver_state (restore)")
  if ctx.state ~= "initialized" then
    util.raise("driver_state: register '" .. name .. "' before ctx:start() (a checkpoint is restored there)")
  end
  for _, entry in ipairs(ctx._states or {}) do
    if entry.name == name then util.raise("driver_state: the name '" .. name .. "' is taken") end
  end
  local _, entry = ctx:_new_state("driver_state")
  entry.name = name
  entry.driver_state = function()
    local value = save()
    local ok, err = pcall(buffer.encode, value)
    if not ok then
      error("driver_state '" .. name .. "': save() returned a value that cannot be checkpointed ("
        .. tostring(err) .. "); return plain data: numbers, strings, booleans and tables of those", 0)
    end
    return value
  end
  entry.restore_driver = restore
end

return M
