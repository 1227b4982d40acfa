-- dstream/names.lua: Spark's camelCase names answered with dstream's. `s:reduceByKey(f)` raises
-- "no method reduceByKey; did you mean reduce_by_key?" at the user's line, instead of "attempt
-- to call method 'reduceByKey' (a nil value)". Only names with a lower-to-upper case change are
-- looked at: dstream's own fields are snake_case, and a missing snake_case field stays nil.
local util = require("dstream.util")

local M = {}

-- Spark's names whose snake_case form is not dstream's name.
local ALIASES = {
  pprint = "print", awaitTerminationOrTimeout = "await_termination", foreachRDD = "foreach_rdd",
  saveAsTextFile = "save_as_text_file", saveAsTextFiles = "save_as_text_files",
  getOrCreate = "get_or_create",
}

-- "reduceByKey" -> "reduce_by_key", "foreachRDD" -> "foreach_rdd".
function M.snake(name)
  return (name:gsub("(%l)(%u)", "%1_%2"):gsub("(%u)(%u%l)", "%1_%2"):lower())
end

-- Gives the method table `methods` (an __index table) a fallback for names it lacks: for a
-- camelCase name, an error naming dstream's name when it has one, or saying there is no such
-- method. Methods found are found as before, in the table itself (the prompt's completion
-- walks it too).
function M.hint(methods, what)
  return setmetatable(methods, { __index = function(_, key)
    if type(key) ~= "string" or not (ALIASES[key] or key:find("%l%u")) then return nil end
    local ours = ALIASES[key] or M.snake(key)
    if rawget(methods, ours) ~= nil then
      util.raise(string.format("no method %s; did you mean %s?", key, ours))
    end
    util.raise(string.format("no method %s on a %s (dstream's names are snake_case: see the guide's tables)",
      key, what))
  end })
end

return M
