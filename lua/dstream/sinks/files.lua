-- dstream/sinks/files.lua: outputs written as files: a batch's part files (save_as_text_file,
-- save_as_object_file; the workers write the parts, see dstream.worker.terminals) put in place
-- whole, and the per-batch directories of a stream's save_as_text_files. Driver's Lua state.
local core = require("dstream.core")
local util = require("dstream.util")

local M = {}

-- The arguments of save_as_text_files(prefix [, suffix]) and save_as_object_files, checked at
-- the user's line (a suffix that is not a string would fail only when the first batch is saved).
function M.check_prefix(prefix, suffix, who)
  if type(prefix) ~= "string" then util.raise(who .. ": expected a path prefix, got " .. type(prefix)) end
  if suffix ~= nil and type(suffix) ~= "string" then
    util.raise(who .. ": the suffix must be a string (the directories are prefix-<time ms>.suffix), got "
      .. type(suffix))
  end
end

-- The directory of a stream's batch: prefix-<time ms>[.suffix].
function M.batch_path(prefix, suffix, time)
  local p = prefix .. "-" .. string.format("%d", time)
  if suffix and suffix ~= "" then p = p .. "." .. suffix end
  return p
end

-- Writes one part file per partition into `path`, which must not exist yet, then _SUCCESS.
-- The files are written into a temporary directory renamed into place at the end, so a
-- reader never sees half a batch.
-- With `replace` (streams: a batch run again after a restart) an existing output of the same
-- batch is replaced by the new one in one rename, never added to.
function M.save(self, path, kind, who, replace)
  if type(path) ~= "string" or path == "" then util.raise(who .. ": expected a path, got " .. type(path)) end
  local probe = io.open(path, "r")
  if probe then
    probe:close()
    if not replace then
      util.raise(who .. ": " .. path .. " already exists: remove it or choose another path")
    end
  end
  -- A hidden name beside the output (as Hadoop's _temporary): what a crash leaves behind is
  -- not matched by a glob of the outputs (prefix-*).
  local parent, base = path:match("^(.*/)([^/]+)/*$")
  if not parent then parent, base = "", path end
  local tmp = parent .. "." .. base .. ".tmp-" .. string.format("%d", core.hrtime_ms() * 1000)
  local ok, err = util.mkdir_p(tmp)
  if not ok then util.raise(who .. ": " .. err) end
  self:_run(function(index)
    return { kind = kind, path = string.format("%s/part-%05d", tmp, index) }
  end, who)
  local fh = io.open(tmp .. "/_SUCCESS", "w")
  if fh then fh:close() end
  local old
  if probe then -- move the previous output aside first: rename does not replace a directory
    old = tmp .. ".replaced"
    local moved, merr = os.rename(path, old)
    if not moved then util.raise(who .. ": cannot replace " .. path .. ": " .. tostring(merr)) end
  end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then
    core.remove_tree(tmp)
    util.raise(who .. ": cannot move the new output into " .. path .. ": " .. tostring(rerr))
  end
  if old then core.remove_tree(old) end
end

return M
