-- dstream/sources/datasets.lua: static datasets (parallelize, text_file): rdds read once, run
-- with the same operators on the same workers as a stream's batches.
local core = require("dstream.core")
local rdd_mod = require("dstream.rdd")
local util = require("dstream.util")
local LIMITS = core.limits() -- ds_limits.h

local M = {}

-- Static datasets: batches with the same operators, run on the same workers.
function M.parallelize(self, list, nparts, opts)
  util.check_table(list, "parallelize", "the list")
  util.check_count(nparts, "parallelize", "the number of partitions", true)
  if opts ~= nil then
    util.check_table(opts, "parallelize", "the options")
    util.check_names(opts, { "pairs" }, "parallelize") -- { pair = true } would give single values
  end
  return rdd_mod.from_list(self, list, nparts or self.partitions, opts and opts.pairs)
end

-- Where text_file cuts `path` (`size` bytes): line ends near every `block` bytes, so that a
-- block begins at a line start. Reads a few bytes at each cut, never the file.
local function line_cuts(fh, size, block)
  local cuts, at = { 0 }, block
  while at < size do
    fh:seek("set", at)
    local cut = nil
    while true do
      local chunk = fh:read(65536)
      if not chunk then break end
      local nl = chunk:find("\n", 1, true)
      if nl then
        cut = at + nl
        break
      end
      at = at + #chunk
    end
    if not cut or cut >= size then break end
    if cut > cuts[#cuts] then cuts[#cuts + 1] = cut end
    at = math.max(cut, cuts[#cuts]) + block
  end
  cuts[#cuts + 1] = size
  return cuts
end

-- The lines of the file at `path` (split at "\n", one final "\r" dropped, no empty line after
-- a final "\n"), in `nparts` partitions of consecutive lines. The file is not read here: the
-- driver cuts it at line ends into blocks of a few MiB (fewer bytes for a small file, so
-- every partition gets some), and each task reads its partition's blocks one at a time
-- (ds_text_file.c): a big file is never held whole, in C memory or in Lua.
function M.text_file(self, path, nparts)
  util.check_count(nparts, "text_file", "the number of partitions", true)
  if type(path) ~= "string" then util.raise("text_file: expected a file path, got " .. type(path)) end
  local fh, err = io.open(path, "rb")
  if not fh then util.raise("text_file: cannot read " .. path .. ": " .. tostring(err)) end
  local size = fh:seek("end")
  if not size then
    fh:close()
    util.raise("text_file: cannot read " .. path .. ": not a regular file")
  end
  nparts = nparts or self.partitions
  local block = math.max(1, math.min(LIMITS.slice_bytes, math.ceil(size / nparts)))
  local cuts = line_cuts(fh, size, block)
  fh:close()
  local nblocks = #cuts - 1
  local parts = {}
  for p = 1, nparts do parts[p] = { file = {} } end
  for i = 1, nblocks do
    local p = math.floor((i - 1) * nparts / nblocks) + 1
    local blocks = parts[p].file
    blocks[#blocks + 1] = { path, cuts[i], cuts[i + 1] }
  end
  return rdd_mod.from_slices(self, parts)
end

return M
