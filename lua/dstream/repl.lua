-- dstream/repl.lua: the interactive prompt: `dstream` with no script, or `dstream -i job.lua`.
--
-- A context `ctx` (1 s batches) is ready. Input is read on the driver's loop (dstream.core's
-- repl_* functions, runtime/ds_repl.c), so streams keep running while the user types, and
-- their output is printed above the prompt. An entry that is not complete Lua yet continues
-- on the next line; an expression prints its values (tables pretty-printed, streams and
-- batches summarised); an error prints its message and traceback and the session goes on.
-- Ctrl-C drops the line being typed, or interrupts the action being evaluated (the action
-- raises "interrupted"); Ctrl-D (or :quit) stops the running contexts gracefully and leaves.
local cli = require("dstream.cli")
local core = require("dstream.core")
local context = require("dstream.context")
local dstream = require("dstream")
local inspect = require("dstream.inspect")
local rdd_mod = require("dstream.rdd")
local stream_mod = require("dstream.stream")

local M = {}

local PROMPT, MORE = "> ", ">> "
local CHUNK = "=stdin" -- the chunk name of code typed at the prompt (as with luajit)

---------------------------------------------------------------------------------------------
-- Showing values

local keywords = {
  ["and"] = true, ["break"] = true, ["do"] = true, ["else"] = true, ["elseif"] = true,
  ["end"] = true, ["false"] = true, ["for"] = true, ["function"] = true, ["goto"] = true,
  ["if"] = true, ["in"] = true, ["local"] = true, ["nil"] = true, ["not"] = true, ["or"] = true,
  ["repeat"] = true, ["return"] = true, ["then"] = true, ["true"] = true, ["until"] = true,
  ["while"] = true,
}

local function is_identifier(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") and not keywords[k]
end

local function number_text(v)
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" elseif v == -math.huge then return "-inf" end
  if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
  return string.format("%.14g", v)
end

local function function_text(f)
  local info = debug.getinfo(f, "S")
  if info.what == "C" then return "builtin function" end
  return "function <" .. info.short_src .. ":" .. info.linedefined .. ">"
end

-- A one-line summary of dstream's own objects, or nil.
local function summary(v)
  local mt = getmetatable(v)
  if mt == stream_mod.Stream then
    local parts = { tostring(v) }
    local from = {}
    for _, p in ipairs(v.parents or {}) do from[#from + 1] = tostring(p) end
    if #from > 0 then parts[#parts + 1] = "from " .. table.concat(from, ", ") end
    if v._newest_time then
      parts[#parts + 1] = "newest batch " .. inspect.time_text(v._newest_time) .. " (:peek() shows it)"
    else
      parts[#parts + 1] = "no batch yet"
    end
    return table.concat(parts, ", ")
  elseif mt == rdd_mod.RDD then
    return tostring(v) .. " (:take(n), :collect() or :count() run it)"
  end
  if type(mt) == "table" and rawget(mt, "__tostring") then return tostring(v) end
  return nil
end

local MAX_DEPTH, MAX_ITEMS = 4, 50

local function sorted_keys(t, n)
  local keys = {}
  for k in pairs(t) do
    if not (type(k) == "number" and k >= 1 and k <= n and k == math.floor(k)) then keys[#keys + 1] = k end
  end
  local order = { number = 1, string = 2, boolean = 3 }
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return (order[ta] or 9) < (order[tb] or 9) end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return keys
end

local render

local function render_table(t, depth, seen, indent, width)
  if seen[t] then return "<cycle>" end
  if depth > MAX_DEPTH then return "{...}" end
  local n = 0
  while rawget(t, n + 1) ~= nil do n = n + 1 end
  local keys = sorted_keys(t, n)
  if n == 0 and #keys == 0 then return "{}" end
  seen[t] = true
  local items, count = {}, 0
  for i = 1, n do
    count = count + 1
    if count > MAX_ITEMS then break end
    items[#items + 1] = render(rawget(t, i), depth + 1, seen, indent .. "  ", width)
  end
  for _, k in ipairs(keys) do
    count = count + 1
    if count > MAX_ITEMS then break end
    local ks = is_identifier(k) and k or ("[" .. render(k, depth + 1, seen, indent .. "  ", width) .. "]")
    items[#items + 1] = ks .. " = " .. render(rawget(t, k), depth + 1, seen, indent .. "  ", width)
  end
  local total = n + #keys
  if total > MAX_ITEMS then items[#items + 1] = "... (" .. (total - MAX_ITEMS) .. " more)" end
  seen[t] = nil
  local one = "{ " .. table.concat(items, ", ") .. " }"
  if #one + #indent <= width and not one:find("\n", 1, true) then return one end
  local inner = indent .. "  "
  return "{\n" .. inner .. table.concat(items, ",\n" .. inner) .. "\n" .. indent .. "}"
end

render = function(v, depth, seen, indent, width)
  local tv = type(v)
  if tv == "string" then
    local q = string.format("%q", v):gsub("\\\n", "\\n")
    return q
  elseif tv == "number" then
    return number_text(v)
  elseif tv == "function" then
    return function_text(v)
  elseif tv == "table" then
    local s = summary(v)
    if s then return s end
    return render_table(v, depth, seen, indent, width)
  end
  local s = summary(v)
  return s or tostring(v)
end

-- How the prompt shows one value: strings as they are at top level, tables pretty-printed
-- with a depth limit, dstream objects summarised.
function M.show(v, width)
  if type(v) == "string" then return v end
  return render(v, 1, {}, "", width or 80)
end

local function show_results(n, results, width)
  if n == 0 then return end
  local parts, multi = {}, false
  for i = 1, n do
    parts[i] = M.show(results[i], width)
    if parts[i]:find("\n", 1, true) then multi = true end
  end
  io.stdout:write(table.concat(parts, multi and "\n" or "\t"), "\n")
  io.stdout:flush()
end

---------------------------------------------------------------------------------------------
-- Completion

local function add_keys(out, seen, t, want_method, prefix)
  for k, v in pairs(t) do
    if type(k) == "string" and is_identifier(k) and not seen[k] and k:sub(1, #prefix) == prefix
      and (not want_method or type(v) == "function") then
      seen[k] = true
      out[#out + 1] = k
    end
  end
end

-- Every name reachable from v: its own fields, then those its metatables' __index tables
-- give (how methods such as ctx:start are found).
local function members(v, want_method, prefix)
  local out, seen = {}, {}
  local hops = 0
  while v ~= nil and hops < 10 do
    hops = hops + 1
    if type(v) == "table" then add_keys(out, seen, v, want_method, prefix) end
    local mt = debug.getmetatable(v)
    local index = type(mt) == "table" and rawget(mt, "__index") or nil
    if type(index) ~= "table" then break end
    v = index
  end
  if prefix:sub(1, 1) ~= "_" then -- private names only when asked for
    local public = {}
    for _, k in ipairs(out) do if k:sub(1, 1) ~= "_" then public[#public + 1] = k end end
    out = public
  end
  table.sort(out)
  return out
end

-- The completions of `word` (the text before the cursor back to a space or bracket), e.g.
-- "pri", "string.fo", "ctx:que", "ctx.sched.po".
function M.complete(word)
  local path, sep, partial = word:match("^(.-)([.:])([%w_]*)$")
  if not path then
    local out = members(_G, false, word)
    for k in pairs(keywords) do
      if k:sub(1, #word) == word and #word > 0 then out[#out + 1] = k end
    end
    table.sort(out)
    return out
  end
  local v = _G
  for name in (path .. "."):gmatch("([^.]*)%.") do
    if not is_identifier(name) then return {} end
    local ok, nv = pcall(function() return v[name] end)
    if not ok or nv == nil then return {} end
    v = nv
  end
  local out = {}
  for _, k in ipairs(members(v, sep == ":", partial)) do out[#out + 1] = path .. sep .. k end
  return out
end

---------------------------------------------------------------------------------------------
-- Evaluating

local function error_text(err)
  if type(err) == "table" and getmetatable(err) and getmetatable(err).__tostring then
    return tostring(err)
  end
  if type(err) ~= "string" then
    return "(error object is a " .. type(err) .. " value: " .. tostring(err) .. ")"
  end
  return err
end

-- The message and the traceback of the user's frames, as the interpreter prints a script's
-- (dstream.cli: dstream's own frames, the prompt's included, only at --log-level debug).
local function on_error(err)
  local msg = error_text(err)
  if msg == "interrupted" then return msg end
  if msg:find("\nstack traceback:", 1, true) then return msg end
  local tb = cli.traceback(2, require("dstream.options")["log-level"] == "debug")
  return tb and (msg .. "\n" .. tb) or msg
end

-- Compiles an entry: an expression (shown) first, else statements. Returns fn, or nil and
-- "incomplete", or nil and the syntax error. An expression becomes `return (...)(code)`,
-- called with a function returning its arguments: the calls in it are then no tail calls,
-- so an error inside names the prompt's line and the traceback keeps the entry's frame.
local function passthrough(...) return ... end
local function compile(code)
  local fn = loadstring("return (...)(" .. code .. "\n)", CHUNK)
  if fn then return function() return fn(passthrough) end end
  local err
  fn, err = loadstring(code, CHUNK)
  if fn then return fn end
  if err:match("'<eof>'$") then return nil, "incomplete" end
  return nil, err
end

---------------------------------------------------------------------------------------------
-- The session

local HELP = [[
dstream interactive prompt: type Lua; an expression shows its value.
  ctx                  a streaming context with 1 s batches (dstream.context{ batch = "1s" })
  dstream              the dstream module: dstream.context{ ... } makes another context
  ctx:start()          start the streams defined so far (add outputs such as :print() first)
  ctx:status()         batches, delays and rates of the running context
  stream:peek([n])     the first n records (default 10) of the newest batch of any stream
  ctx:stop()           stop the streams (ctx:stop{ graceful = true } finishes received data)
Commands:
  :help                this text
  :load file.lua       run a file here (its globals stay, as a script's with dstream -i)
  :paste               type or paste several lines, run as one chunk (end: :end or Ctrl-D)
  :history [n]         the last n entries of the history (default 20)
  :reset               stop ctx and make a new one (a stopped context cannot be restarted)
  :sql SELECT ...      run SQL over ctx's tables (to_table) and show the rows; a stream
                       table reads the newest batch its stream produced
  :quit                stop every context gracefully and leave (as Ctrl-D does)
Keys: Tab completes names, fields and methods (ctx:sta<Tab>); Up/Down walk the history and
Ctrl-R searches it (Enter runs the line found); Ctrl-L clears the screen; Ctrl-C drops the
line being typed or interrupts the action that is running (rdd:collect(),
ctx:await_termination(), ...); Ctrl-D on an empty line quits.
Each entry is its own chunk, as in luajit: `local x = 1` lasts one entry, `x = 1` stays.
Functions defined here run on the workers like a script's: the globals they read travel with
them.]]

local function pack(ok, ...)
  return { ok = ok, n = select("#", ...), ... }
end

local function new_context()
  local ctx = dstream.context { batch = "1s" }
  rawset(_G, "ctx", ctx)
  return ctx
end

local function is_context(v) return getmetatable(v) == context.Context end

-- The context a script run before the prompt (`dstream -i job.lua`) left open, which `ctx`
-- then names instead of a second, idle one: the running one started last, else any.
local function script_context()
  local best
  for _, c in ipairs(context.open_contexts and context.open_contexts() or {}) do
    if not best or (c.state == "active" and (best.state ~= "active" or (c.started_at or 0) > (best.started_at or 0))) then
      best = c
    end
  end
  return best
end

function M.run()
  rawset(_G, "dstream", rawget(_G, "dstream") or dstream)
  local ctx = rawget(_G, "ctx")
  local from_script = is_context(ctx) and ctx.state ~= "stopped"
  if not from_script then
    ctx = script_context()
    from_script = ctx ~= nil
    if ctx then rawset(_G, "ctx", ctx) else ctx = new_context() end
  end

  local lines, eof = {}, false
  local state = "idle" -- "prompt" while a line is being read, "eval" while one runs
  local function on_line(line)
    if line == nil then eof = true else lines[#lines + 1] = line end
  end
  local history = os.getenv("DSTREAM_HISTORY")
  if not history and os.getenv("HOME") then history = os.getenv("HOME") .. "/.dstream_history" end
  if history == "" then history = nil end
  local mode = core.repl_open { on_line = on_line, complete = M.complete, history = history }
  local tty = mode == "tty"

  local pending = "" -- an entry continued over several lines
  local stopping -- while contexts stop gracefully: "all", or the one context
  context.repl_owns_sigint = true
  local sigint = core.signal(core.SIGINT, function()
    if stopping == "all" then
      context.shutdown() -- Ctrl-C while stopping gracefully: stop now
    elseif stopping then
      stopping:stop()
    elseif state == "prompt" then
      pending = ""
      core.repl_cancel(PROMPT)
    elseif state == "eval" then
      core.repl_interrupt()
    end
  end)

  local reported = setmetatable({}, { __mode = "k" })
  local function report_failures()
    local c = rawget(_G, "ctx")
    if is_context(c) and c.error and not reported[c] then
      reported[c] = true
      io.stdout:write("ctx failed and stopped: ", c.error, "\n(:reset makes a new ctx)\n")
      io.stdout:flush()
    end
  end

  if tty then
    io.stdout:write(string.format(
      "dstream %s (%s) - `ctx` is %s with %s batches and %d workers (%s)\n"
        .. "Type :help for help, Ctrl-D or :quit to leave.\n",
      dstream.version, jit and jit.version or "Lua", from_script and "the script's context" or "a context",
      number_text(ctx.batch_ms / 1000) .. " s", ctx.workers, ctx.state))
    io.stdout:flush()
  end

  -- Runs a compiled entry (a line, a paste, a loaded file) and shows its values or error.
  local function execute(fn)
    state = "eval"
    core.take_interrupt() -- a stale Ctrl-C must not interrupt this entry
    local res = pack(xpcall(fn, on_error))
    core.take_interrupt()
    state = "idle"
    io.stdout:flush()
    if res.ok then
      local okshow, serr = pcall(show_results, res.n, res, tty and core.repl_columns() or 80)
      if not okshow then io.stdout:write("(cannot show the value: ", tostring(serr), ")\n") end
    else
      if res[1] == "interrupted" and tty then io.stderr:write("\n") end -- after the ^C echo
      io.stderr:write(tostring(res[1]), "\n")
      io.stderr:flush()
    end
  end

  local session = {} -- entries of this session (the history without a terminal)
  local paste -- the lines of a :paste so far
  local function end_paste()
    local code = table.concat(paste, "\n")
    paste = nil
    if code:match("^%s*$") then return end
    local fn, err = compile(code)
    if not fn then
      io.stderr:write(err == "incomplete" and "the paste is not complete Lua: " .. code:gsub("\n.*", " ...") or err, "\n")
      return
    end
    execute(fn)
  end

  local function command(cmd, rest)
    if cmd == ":help" or cmd == ":h" or cmd == ":?" then
      print(HELP)
    elseif cmd == ":load" or cmd == ":l" then
      if rest == "" then return print("usage: :load file.lua") end
      local path = rest:match('^"(.*)"$') or rest:match("^'(.*)'$") or rest
      local fn, err = loadfile(path)
      if not fn then
        io.stderr:write(err, "\n")
        return
      end
      execute(fn)
    elseif cmd == ":paste" or cmd == ":p" then
      paste = {}
      print("(paste mode: the lines you type or paste run as one chunk; a line :end or Ctrl-D ends it)")
    elseif cmd == ":history" then
      local entries = tty and core.repl_history() or session
      local n = tonumber(rest) or 20
      for i = math.max(1, #entries - n + 1), #entries do
        io.stdout:write(string.format("%5d  %s\n", i, entries[i]))
      end
      io.stdout:flush()
    elseif cmd == ":sql" then
      if rest == "" then return print("usage: :sql SELECT ... FROM table (tables come from stream:to_table or rdd:to_table)") end
      execute(function() require("dstream.sql").run_now(rawget(_G, "ctx"), rest) end)
    elseif cmd == ":quit" or cmd == ":q" or cmd == ":exit" then
      return "quit"
    elseif cmd == ":reset" then
      local c = rawget(_G, "ctx")
      if is_context(c) and c.state ~= "stopped" then
        stopping = c
        local sok, serr = pcall(c.stop, c, { graceful = true })
        stopping = nil
        if not sok then io.stderr:write(error_text(serr), "\n") end
      end
      local nc = new_context()
      print("ctx is a new context: " .. tostring(nc))
    else
      print("unknown command " .. cmd .. " (:help lists them)")
    end
  end

  local function evaluate(line)
    if paste then
      if line:match("^%s*:end%s*$") then return end_paste() end
      paste[#paste + 1] = line
      return
    end
    if pending == "" then
      local cmd, rest = line:match("^%s*(:%a+)%s*(.-)%s*$")
      if cmd then return command(cmd, rest) end
      if line:match("^%s*$") then return end
    end
    local code = pending == "" and line or (pending .. "\n" .. line)
    local fn, err = compile(code)
    if not fn and err == "incomplete" then
      pending = code
      return
    end
    pending = ""
    if not fn then
      io.stderr:write(err, "\n")
      return
    end
    execute(fn)
  end

  local ok, err = pcall(function()
    while true do
      report_failures()
      local line
      if #lines > 0 then
        line = table.remove(lines, 1)
      elseif eof and paste then -- Ctrl-D ends a paste; at the end of piped input, it runs
        end_paste()
        if tty then eof = false end
      elseif eof then
        break
      else
        local kind, text = core.repl_read((pending == "" and not paste) and PROMPT or MORE)
        if kind == "line" then
          line = text
        elseif kind == "eof" then
          eof = true
        else
          state = "prompt"
          while #lines == 0 and not eof do
            local rok, rerr = pcall(core.run, "once")
            if not rok then io.stderr:write(error_text(rerr), "\n") end
            report_failures()
          end
          state = "idle"
        end
      end
      if line then
        if tty then core.repl_add_history(line) end
        if not line:match("^%s*$") then session[#session + 1] = line end
        if evaluate(line) == "quit" then break end
      end
    end
  end)
  core.repl_stop_reading()
  -- Leaving: stop the streams gracefully (batches received are finished); Ctrl-C again stops
  -- them at once.
  stopping = "all"
  local sok, serr = pcall(context.shutdown, { graceful = true })
  stopping = nil
  sigint:close()
  context.repl_owns_sigint = nil
  core.repl_close()
  if not ok then error(err, 0) end
  if not sok then error(serr, 0) end
end

return M
