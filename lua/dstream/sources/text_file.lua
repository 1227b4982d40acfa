-- dstream/sources/text_file.lua: text_file_stream, the lines of files that appear in a
-- directory (a receiver in C, runtime/ds_recv_file.c).
local core = require("dstream.core")
local sources = require("dstream.sources")
local util = require("dstream.util")

local M = {}

function M.text_file_stream(self, dir, opts, ...)
  sources.check_not_started(self, "text_file_stream")
  sources.check_options("text_file_stream(dir [, opts])", 2, opts, ...)
  -- (runtime/ds_lua_sources.c checks their values when the source opens, in ctx:start())
  util.check_names(opts or {}, { "max_line", "max_rate", "new_files_only", "remember" }, "text_file_stream")
  if type(dir) ~= "string" then util.raise("text_file_stream: expected a directory, got " .. type(dir)) end
  local probe = io.open(dir .. "/.", "r")
  if not probe then
    util.raise("text_file_stream: directory '" .. dir .. "' does not exist or cannot be read: create it first")
  end
  probe:close()
  -- Where reading stands, from what each seal took (src:take_parts: byte ranges of files,
  -- each with its ctime, and the source's threshold): `done` maps the files read whole by
  -- completed batches (and those there at the first start) to their ctime, `threshold` is
  -- the source's as of the last completed batch (a file whose ctime is below it is old), and
  -- `partial` the file half read, {name, end, ctime}. A checkpoint's position is these, with
  -- only the names inside the window. `cursor` and `log_threshold` are the same as of the
  -- newest batch generated, for a restart: a file is read again from where the last logged
  -- batch left it. Nothing here walks every name per batch: names outside the window are
  -- dropped once `done` has doubled (amortized O(1) per name) and when a checkpoint is taken.
  local batch_ranges = {} -- [time] = { {name, start, end, done, ctime}, ..., threshold = ms }
  local done, ndone, kept, threshold, partial = {}, 0, 0, nil, nil
  local cursor, log_threshold, restored = nil, nil, false
  local function old(ctime) return ctime and threshold and ctime < threshold end
  local function read_whole(name, ctime) -- ctime false: unknown (older checkpoints)
    if old(ctime) then return end
    if done[name] == nil then ndone = ndone + 1 end
    done[name] = ctime
    if ndone < 2 * kept + 64 then return end
    ndone = 0
    for n, c in pairs(done) do
      if old(c) then done[n] = nil else ndone = ndone + 1 end
    end
    kept = ndone
  end
  local function took(time, ranges)
    batch_ranges[time] = ranges
    log_threshold = ranges.threshold or log_threshold
    for _, r in ipairs(ranges) do
      if r[4] then
        if cursor and cursor[1] == r[1] then cursor = nil end
      else
        cursor = { r[1], r[3], r[5] }
      end
    end
  end
  local s
  s = sources.receiver(self, "text_file_stream " .. dir, function()
    if not restored then
      local src = core.file_source(dir, opts)
      -- Files already there are not input (unless new_files_only = false): a restart must
      -- know them, so the checkpoint written at start remembers them (those in the window).
      if not (opts and opts.new_files_only == false) then
        threshold = src:threshold()
        log_threshold = threshold
        for name, ctime in pairs(src:remembered()) do read_whole(name, ctime) end
      end
      return src
    end
    -- Restarted: every file not read by a completed or logged batch is new if its ctime is
    -- in the window, even one that was there before the start (it arrived while the job was
    -- down).
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.new_files_only = false
    local src = core.file_source(dir, o)
    if log_threshold then src:set_threshold(log_threshold) end
    for name, ctime in pairs(done) do
      if ctime then
        src:mark_seen(name, ctime)
      else -- an older checkpoint's name: its ctime is looked up (nil: the file is gone)
        local c = src:mark_seen(name)
        done[name] = c or nil
        if not c then ndone = ndone - 1 end
      end
    end
    for _, ranges in pairs(batch_ranges) do
      for _, r in ipairs(ranges) do src:mark_seen(r[1], r[5]) end
    end
    if cursor then src:resume(cursor[1], cursor[2], cursor[3]) end
    return src
  end, function(input, time)
    local ranges, thr = input.source:take_parts()
    ranges.threshold = thr
    took(time, ranges)
  end)
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
          read_whole(r[1], r[5] or false)
          if partial and partial[1] == r[1] then partial = nil end
        else
          partial = { r[1], r[3], r[5] }
        end
      end
      threshold = batch_ranges[t].threshold or threshold
      batch_ranges[t] = nil
    end
  end
  -- The checkpoint's position: the threshold and the names in the window, name = ctime.
  s.position = function()
    local names = {}
    for name, ctime in pairs(done) do
      if not old(ctime) then names[name] = ctime end
    end
    return { threshold = threshold, remembered = names, partial = partial }
  end
  s.restore = function(_, pos)
    restored = true
    if pos.remembered then
      threshold = pos.threshold
      for name, ctime in pairs(pos.remembered) do read_whole(name, ctime) end
    else -- older checkpoints: a list of names, or { done = names }, without ctimes
      for _, name in ipairs(pos.done or pos) do read_whole(name, false) end
    end
    log_threshold = threshold
    partial = pos.partial
    cursor = partial and { partial[1], partial[2], partial[3] }
  end
  return s
end

return M
