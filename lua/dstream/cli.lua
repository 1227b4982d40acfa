-- dstream/cli.lua: the interpreter's Lua side (runtime/ds_main.c calls it): the command line's
-- option checks, the traceback of an error that escapes the script, the hint when a script
-- returns with a streaming context running, and -j options.
local jitopt = require("dstream.jitopt")

local M = {}

-- dstream's own frames: its modules' and the stdlib's (the notion util.raise uses to blame
-- the user's line).
local own = require("dstream.util").is_own

---------------------------------------------------------------------------------------------
-- Tracebacks

-- One line of a traceback, as debug.traceback writes it.
local function frame_text(info)
  local where
  if info.what == "C" then
    where = "[C]:"
  elseif info.currentline and info.currentline > 0 then
    where = info.short_src .. ":" .. info.currentline .. ":"
  else
    where = info.short_src .. ":"
  end
  local what
  if info.namewhat ~= "" and info.name then
    what = " in function '" .. info.name .. "'"
  elseif info.what == "main" then
    what = " in main chunk"
  elseif info.what == "C" then
    what = " ?"
  else
    what = " in function <" .. info.short_src .. ":" .. info.linedefined .. ">"
  end
  return "\t" .. where .. what
end

-- The traceback of the stack from `level` (1: the caller of this function's caller) outward.
-- all: every frame (--log-level debug); else only the user's: dstream's own frames and the
-- C frames before the first of the user's (error, assert) are left out.
function M.traceback(level, all)
  local lines, seen_user = {}, false
  local l = (level or 1) + 1
  while true do
    local info = debug.getinfo(l, "Sln")
    if not info then break end
    l = l + 1
    local mine = info.what ~= "C" and info.source ~= "=(tail call)" and not own(info.source)
    if mine then seen_user = true end
    if all or mine or (seen_user and info.what == "C") then lines[#lines + 1] = frame_text(info) end
  end
  while not all and #lines > 0 and lines[#lines]:match("^\t%[C%]") do lines[#lines] = nil end
  if #lines == 0 then return nil end
  return "stack traceback:\n" .. table.concat(lines, "\n")
end

-- Error handler of the script's top-level call: the message, then the traceback of the
-- user's frames (as luajit prints one; every frame at --log-level debug). A message that
-- carries a traceback already (a failed task's: the user's code on the worker) is kept as it
-- is; its line names where the script waited for the job.
function M.error_handler(err)
  if err == nil then return nil end -- error() with no value: a silent failure (busted uses it)
  if type(err) == "table" and getmetatable(err) and getmetatable(err).__tostring then
    err = tostring(err)
  elseif type(err) ~= "string" then
    err = "(error object is a " .. type(err) .. " value: " .. tostring(err) .. ")"
  end
  local debug_level = require("dstream.options")["log-level"] == "debug"
  if not debug_level and err:find("\nstack traceback:", 1, true) then return err end
  local tb = M.traceback(2, debug_level)
  return tb and (err .. "\n" .. tb) or err
end

---------------------------------------------------------------------------------------------
-- The command line's options, checked before any code runs

local ffi = require("ffi")
pcall(ffi.cdef, "int access(const char *path, int mode);")
pcall(ffi.cdef, "typedef struct ds_cli_dir ds_cli_dir; ds_cli_dir *opendir(const char *name); int closedir(ds_cli_dir *dir);")

local function is_dir(path)
  local ok, d = pcall(ffi.C.opendir, path)
  if not ok or d == nil then return false end
  ffi.C.closedir(d)
  return true
end

local function exists(path)
  local ok, rc = pcall(ffi.C.access, path, 0)
  return ok and rc == 0
end

local function whole(v)
  local n = tonumber(v)
  if n and n >= 1 and n == math.floor(n) then return n end
  return nil, "expected a whole number of at least 1, got " .. tostring(v)
end

local checks = {
  workers = function(v) return require("dstream.context").parse_workers(v) end,
  ["worker-memory"] = function(v) return require("dstream.context").parse_worker_memory(v) end,
  partitions = whole,
  cluster = function(v) return require("dstream.context").parse_cluster(v) end,
  ["log-level"] = function(v)
    for _, l in ipairs { "error", "warn", "info", "debug" } do if v == l then return v end end
    return nil, "takes error, warn, info or debug, not '" .. tostring(v) .. "'"
  end,
  ui = function(v, all)
    local address = require("dstream.monitor.address")
    local host, err = address.parse_address(v)
    if not host then return nil, err end
    if not all["ui-public"] and not address.is_loopback(host) then
      return nil, "refusing to serve the UI on " .. host .. ", which other machines can reach;"
        .. " use a loopback address such as 127.0.0.1, or add --ui-public"
    end
    return v
  end,
  -- A checkpoint directory is made when missing, but not its parents: a typo in a path should
  -- not become a tree of directories somewhere.
  checkpoint = function(v)
    if v == "" then return nil, "expected a directory" end
    if is_dir(v) then return v end
    if exists(v) then return nil, v .. " is not a directory" end
    local parent = v:gsub("/+$", ""):match("^(.*)/[^/]*$")
    if parent == "" then parent = "/" end
    if parent and not is_dir(parent) then
      return nil, parent .. " does not exist: create it first (dstream makes the checkpoint directory, not its parents)"
    end
    return v
  end,
}

-- Checks the value of the command line's option `name` (its long name, without "--"), with
-- `all` the options given so far. Returns true (and a warning, or nil), or nil and why not.
function M.check_option(name, value, all)
  local check = checks[name]
  if not check then return true end
  local ok, err, warning = check(value, all or require("dstream.options"))
  if ok == nil then return nil, err end
  return true, warning
end

---------------------------------------------------------------------------------------------
-- The end of a script

-- Called when the script returned without an error (and no prompt follows): a context it
-- started on the wall clock and never waited for would be stopped in silence, which looks
-- like a job that did nothing. Prints one line per such context.
function M.script_returned()
  local context = package.loaded["dstream.context"]
  if not context or not context.open_contexts then return end
  for _, ctx in ipairs(context.open_contexts()) do
    if ctx.state == "active" and ctx.clock == "system" and not ctx._awaited then
      io.stderr:write(string.format("dstream: the script returned while context '%s' was running,"
        .. " so it stops now: a streaming job ends with ctx:await_termination()\n", ctx.name))
    end
  end
end

function M.apply_jit(cmd)
  jitopt.apply(cmd)
end

return M
