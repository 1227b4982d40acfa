-- dstream/sources/text_file.lua: text_file_stream, the lines of files that appear in a
-- directory (a receiver in C, runtime/ds_recv_file.c).
local core = require("dstream.core")
local sources = require("dstream.sources")

local M = {}

function M.text_file_stream(self, dir, opts)
  sources.check_not_started(self, "text_file_stream")
  if type(dir) ~= "string" then error("text_file_stream: expected a directory, got " .. type(dir), 2) end
  local probe = io.open(dir .. "/.", "r")
  if not probe then
    error("text_file_stream: directory '" .. dir .. "' does not exist or cannot be read: create it first", 2)
  end
  probe:close()
  -- Where reading stands, in byte ranges of files (src:take_parts after each seal): `done`
  -- lists the files read whole by completed batches and `partial` the one half read, {name,
  -- end}: a checkpoint's position. `known` and `cursor` are the same as of the newest batch
  -- generated, for a restart: a file is read again from where the last logged batch left it.
  local batch_ranges = {} -- [time] = { {name, start, end, done}, ... }
  local done, done_list, partial = {}, {}, nil
  local known, cursor, restored = {}, nil, false
  local function read_whole(name)
    if not done[name] then
      done[name] = true
      done_list[#done_list + 1] = name
    end
    known[name] = true
  end
  local function took(time, ranges)
    batch_ranges[time] = ranges
    for _, r in ipairs(ranges) do
      if r[4] then
        known[r[1]] = true
        if cursor and cursor[1] == r[1] then cursor = nil end
      else
        cursor = { r[1], r[3] }
      end
    end
  end
  local s
  s = sources.receiver(self, "text_file_stream " .. dir, function()
    if not restored then
      local src = core.file_source(dir, opts)
      -- Files already there are not input (unless new_files_only = false): a restart must
      -- know them, so the checkpoint written at start lists them as read.
      if not (opts and opts.new_files_only == false) then
        for _, name in ipairs(src:seen()) do read_whole(name) end
      end
      return src
    end
    -- Restarted: every file not read by a logged batch is new, even one that was there
    -- before the start (it arrived while the job was down).
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.new_files_only = false
    local src = core.file_source(dir, o)
    for name in pairs(known) do src:mark_seen(name) end
    if cursor then src:resume(cursor[1], cursor[2]) end
    return src
  end, function(input, time) took(time, input.source:take_parts()) end)
  s.log_entry = function(_, time) return batch_ranges[time] end
  s.replay = function(_, time, ranges)
    restored = true
    local paths = {}
    for i, r in ipairs(ranges) do paths[i] = { dir .. "/" .. r[1], r[2], r[3] } end
    local parts, err = core.read_file_ranges(paths, self.partitions, opts and opts.max_line)
    if not parts then
      core.log("warn", string.format("text_file_stream %s: batch %d ms cannot be re-run whole: %s",
        dir, time, err))
    end
    s.sealed[time] = parts
    took(time, ranges)
  end
  s.on_batch_done = function(_, time)
    local times = {}
    for t in pairs(batch_ranges) do if t <= time then times[#times + 1] = t end end
    table.sort(times)
    for _, t in ipairs(times) do
      for _, r in ipairs(batch_ranges[t]) do
        if r[4] then
          read_whole(r[1])
          if partial and partial[1] == r[1] then partial = nil end
        else
          partial = { r[1], r[3] }
        end
      end
      batch_ranges[t] = nil
    end
  end
  s.position = function() return { done = done_list, partial = partial } end
  s.restore = function(_, pos)
    restored = true
    for _, name in ipairs(pos.done or pos) do read_whole(name) end -- (older checkpoints: a list)
    partial = pos.partial
    cursor = partial and { partial[1], partial[2] }
  end
  return s
end

return M
