-- dstream/ship.lua: moving closures and the values they capture from the driver's Lua state
-- to worker states, the way Python's cloudpickle does.
--
-- encode(value) turns a value graph into bytes (string.buffer format); decode(bytes) rebuilds
-- it in another state. Functions travel as bytecode (string.dump, not stripped, so line
-- numbers survive) with their upvalues copied by value; the globals their code reads travel
-- along; module tables and functions found in loaded modules travel as names and are
-- re-required on the worker; `_G` becomes the worker's `_G`. One transfer keeps identity:
-- a table or function reached twice is rebuilt once, cycles and recursive locals included,
-- and upvalues that sibling closures share are joined again (debug.upvaluejoin).
-- Values that cannot travel (userdata, coroutines, cdata) are refused with the path that
-- reached them. Bytecode is never persisted: it loads only into the same LuaJIT build.

local buffer = require("string.buffer")
local jutil = require("jit.util")

local type, pairs, next, tostring = type, pairs, next, tostring
local getupvalue, setupvalue = debug.getupvalue, debug.setupvalue
local upvalueid, upvaluejoin = debug.upvalueid, debug.upvaluejoin
local getinfo = debug.getinfo

local M = {}

local GGET, GSET -- bytecode opcodes that read and write globals
do
  local names = require("jit.vmdef").bcnames
  for op = 0, #names / 6 - 1 do
    local name = names:sub(op * 6 + 1, op * 6 + 6):gsub("%s+$", "")
    if name == "GGET" then GGET = op elseif name == "GSET" then GSET = op end
  end
end

-- Names of the globals that a function's code (and the functions nested in it) reads.
local function global_names(fn, out)
  local info = jutil.funcinfo(fn)
  for pc = 1, info.bytecodes or 0 do
    local ins = jutil.funcbc(fn, pc)
    if ins then
      local op = ins % 256
      if op == GGET or op == GSET then
        local name = jutil.funck(fn, -math.floor(ins / 65536) - 1)
        if type(name) == "string" then out[name] = true end
      end
    end
  end
  -- Nested prototypes are the negative constants that are not strings or tables.
  for i = -1, -(info.gcconsts or 0), -1 do
    local k = jutil.funck(fn, i)
    if k ~= nil and type(k) == "proto" then global_names(k, out) end
  end
  return out
end

-- Where every function and table of every loaded module can be found by name.
local function index_modules()
  local fn_names, mod_names = {}, {}
  for modname, mod in pairs(package.loaded) do
    if type(mod) == "table" and mod ~= _G and type(modname) == "string" then
      if mod_names[mod] == nil or #modname < #mod_names[mod] then mod_names[mod] = modname end
      for k, v in pairs(mod) do
        if type(k) == "string" and type(v) == "function" and fn_names[v] == nil then
          fn_names[v] = { modname, k }
        end
      end
    end
  end
  for k, v in pairs(_G) do
    if type(k) == "string" and type(v) == "function" and not jutil.funcinfo(v).source then
      fn_names[v] = { "_G", k } -- builtins only: Lua functions in _G are the user's, sent whole
    end
  end
  return fn_names, mod_names
end

local function where(fn)
  local info = getinfo(fn, "S")
  return (info.short_src or "?") .. ":" .. (info.linedefined or 0)
end

local function describe(v)
  local kind = type(v)
  if kind == "thread" then return "a coroutine" end
  if kind == "userdata" then return "a userdata (" .. tostring(v) .. ")" end
  if kind == "function" then return "a C function that no loaded module exports" end
  return "a " .. kind .. " (" .. tostring(v) .. ")"
end

local function refuse(st, v)
  local path = st.path
  local n = #path > 1 and #path - 1 or #path -- the root's own label only when it is the culprit
  error({ ship_error = true, message = "cannot send " .. table.concat(path, " of ", 1, n)
    .. " to the workers: it is " .. describe(v) .. ", and only nil, booleans, numbers, "
    .. "strings, tables and Lua functions can be copied between Lua states. "
    .. "Create it inside the function instead, or pass the data it holds." }, 0)
end

local encode_value

local function encode_function(st, fn)
  local named = st.fn_names[fn]
  if named then
    st.nodes[#st.nodes + 1] = { "b", named[1], named[2] }
    return
  end
  if not jutil.funcinfo(fn).source then
    return refuse(st, fn) -- a C function nobody exported under a name: nothing to send
  end
  local node = { "f", string.dump(fn), {}, {}, {}, where(fn) }
  st.nodes[#st.nodes + 1] = node
  local i = 1
  while true do
    local name, v = getupvalue(fn, i)
    if name == nil then break end
    local id = upvalueid(fn, i)
    local uv = st.upvalue_ids[id]
    if not uv then
      st.nupvalues = st.nupvalues + 1
      uv = st.nupvalues
      st.upvalue_ids[id] = uv
    end
    node[4][i] = uv
    table.insert(st.path, 1, "upvalue '" .. name .. "' of the function at " .. node[6])
    node[3][i] = encode_value(st, v)
    table.remove(st.path, 1)
    i = i + 1
  end
  node[7] = i - 1
  local env = getfenv(fn) -- busted and sandboxes give chunks an environment other than _G
  for gname in pairs(global_names(fn, {})) do
    local v = rawget(env, gname)
    if v == nil and env ~= _G then v = env[gname] end
    if v ~= nil then
      table.insert(st.path, 1, "global '" .. gname .. "' read by the function at " .. node[6])
      node[5][gname] = encode_value(st, v)
      table.remove(st.path, 1)
    end
  end
end

local function encode_table(st, t)
  if t == _G then
    st.nodes[#st.nodes + 1] = { "g" }
    return
  end
  local modname = st.mod_names[t]
  if modname then
    st.nodes[#st.nodes + 1] = { "m", modname }
    return
  end
  -- Objects that know how to travel (broadcasts, accumulators) send a reference:
  -- __ship returns a module name and plain data for that module's __unship.
  local custom = getmetatable(t)
  if type(custom) == "table" and rawget(custom, "__ship") then
    local mod, data = custom.__ship(t)
    st.nodes[#st.nodes + 1] = { "x", mod, data }
    return
  end
  local keys, vals = {}, {}
  local node = { "t", keys, vals }
  st.nodes[#st.nodes + 1] = node
  local n = 0
  for k, v in next, t do
    n = n + 1
    table.insert(st.path, 1, "a key of a table")
    keys[n] = encode_value(st, k)
    table.remove(st.path, 1)
    table.insert(st.path, 1, "field '" .. tostring(k) .. "'")
    vals[n] = encode_value(st, v)
    table.remove(st.path, 1)
  end
  node[5] = n
  local mt = getmetatable(t)
  if mt ~= nil then
    if type(mt) ~= "table" then return refuse(st, mt) end
    table.insert(st.path, 1, "the metatable")
    node[4] = encode_value(st, mt)
    table.remove(st.path, 1)
  end
end

-- A reference to node i is the one-element table { i }: every real table is a node, so any
-- table inside the encoded form is a reference.
encode_value = function(st, v)
  local tv = type(v)
  if tv == "nil" or tv == "boolean" or tv == "number" or tv == "string" then return v end
  local ref = st.refs[v]
  if ref then return ref end
  if tv ~= "table" and tv ~= "function" then return refuse(st, v) end
  ref = { #st.nodes + 1 }
  st.refs[v] = ref -- before the contents: recursion and shared references resolve to it
  if tv == "table" then encode_table(st, v) else encode_function(st, v) end
  return ref
end

-- Returns the bytes of `value`, or raises { ship_error = true, message = ... } when part of
-- it cannot travel. `what` names the value for messages ("the function given to map").
function M.encode(value, what)
  local fn_names, mod_names = index_modules()
  local st = {
    nodes = {}, refs = {}, path = { what or "the value" }, upvalue_ids = {}, nupvalues = 0,
    fn_names = fn_names, mod_names = mod_names,
  }
  local root = encode_value(st, value)
  return buffer.encode({ root = root, nodes = st.nodes })
end

-- Like encode, but returns nil, message instead of raising.
function M.try_encode(value, what)
  local ok, res = pcall(M.encode, value, what)
  if ok then return res end
  if type(res) == "table" and res.ship_error then return nil, res.message end
  error(res, 0)
end

local function resolve_path(modname, key)
  local mod = modname == "_G" and _G or require(modname)
  local v = mod[key]
  if v == nil then error("shipped code needs " .. modname .. "." .. key .. ", which this worker does not have", 0) end
  return v
end

-- Rebuilds a value encoded by M.encode in this Lua state.
function M.decode(bytes)
  local doc = buffer.decode(bytes)
  local nodes, objs = doc.nodes, {}
  for i = 1, #nodes do -- first every object exists, then they are filled: cycles are free
    local node = nodes[i]
    local kind = node[1]
    if kind == "t" then
      objs[i] = {}
    elseif kind == "f" then
      local fn, err = loadstring(node[2])
      if not fn then error("cannot load shipped function from " .. node[6] .. ": " .. err, 0) end
      objs[i] = fn
    elseif kind == "b" then
      objs[i] = resolve_path(node[2], node[3])
    elseif kind == "m" then
      objs[i] = require(node[2])
    elseif kind == "x" then
      objs[i] = require(node[2]).__unship(node[3])
    else
      objs[i] = _G
    end
  end
  local function value(v)
    if type(v) == "table" then return objs[v[1]] end
    return v
  end
  local first_holder = {}
  for i = 1, #nodes do
    local node = nodes[i]
    if node[1] == "t" then
      local t, keys, vals = objs[i], node[2], node[3]
      for j = 1, node[5] or 0 do t[value(keys[j])] = value(vals[j]) end
      if node[4] then setmetatable(t, value(node[4])) end
    elseif node[1] == "f" then
      local fn, upvals, ids = objs[i], node[3], node[4]
      for j = 1, node[7] or 0 do
        local holder = first_holder[ids[j]]
        if holder then
          upvaluejoin(fn, j, holder[1], holder[2])
        else
          first_holder[ids[j]] = { fn, j }
          setupvalue(fn, j, value(upvals[j]))
        end
      end
      for gname, v in pairs(node[5]) do rawset(_G, gname, value(v)) end
    end
  end
  return value(doc.root)
end

return M
