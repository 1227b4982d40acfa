-- dstream/worker/ops/keyed.lua: worker-side operators of key/value streams: grouping, the reduce
-- side of cogroup and the joins, and flat_map_values. Registered into dstream.worker.
return function(W)
  local operators = W.operators
  local shipped = W.shipped
  local key_of = require("dstream.worker.task").key_of
  local type, error = type, error

  function operators.flat_map_values(spec, nxt, fin)
    local f = shipped(spec.fn)
    return function(k, v)
      local r, s, c = f(v)
      local tr = type(r)
      if tr == "function" then
        for x in r, s, c do nxt(k, x) end
      elseif tr == "table" then
        for i = 1, #r do nxt(k, r[i]) end
      elseif r ~= nil then
        error("flat_map_values: the function must return an array or an iterator, not a " .. tr, 0)
      end
    end, fin
  end

  -- Reduce side of group_by_key: every key once, with its values in arrival order.
  function operators.group(_, nxt, fin)
    local groups, order, n = {}, {}, 0
    return function(k, v)
      local list = groups[k]
      if list == nil and type(k) == "table" then -- an array key: its representative
        k = key_of(k)
        list = groups[k]
      end
      if list == nil then
        list = {}
        groups[k] = list
        n = n + 1
        order[n] = k
      end
      list[#list + 1] = v
    end, function()
      for i = 1, n do
        local k = order[i]
        nxt(k, groups[k])
      end
      fin()
    end
  end

  -- Reduce side of cogroup and the joins. Records arrive with their side (1 left, 2 right).
  local function cross(nxt, k, left, right)
    for i = 1, #left do
      for j = 1, #right do nxt(k, { left[i], right[j] }) end
    end
  end

  local emitters = {
    cogroup = function(nxt, k, left, right) nxt(k, { left, right }) end,
    join = cross,
    left_outer_join = function(nxt, k, left, right)
      if #right == 0 then
        for i = 1, #left do nxt(k, { left[i], nil }) end
      else
        cross(nxt, k, left, right)
      end
    end,
    right_outer_join = function(nxt, k, left, right)
      if #left == 0 then
        for j = 1, #right do nxt(k, { nil, right[j] }) end
      else
        cross(nxt, k, left, right)
      end
    end,
    full_outer_join = function(nxt, k, left, right)
      if #left == 0 then
        for j = 1, #right do nxt(k, { nil, right[j] }) end
      elseif #right == 0 then
        for i = 1, #left do nxt(k, { left[i], nil }) end
      else
        cross(nxt, k, left, right)
      end
    end,
  }

  function operators.cogroup(spec, nxt, fin)
    local emit_key = emitters[spec.mode]
    if not emit_key then error("unknown cogroup mode " .. tostring(spec.mode), 0) end
    local groups, order, n = {}, {}, 0
    return function(k, v, side)
      local g = groups[k]
      if g == nil and type(k) == "table" then -- an array key: its representative
        k = key_of(k)
        g = groups[k]
      end
      if g == nil then
        g = { {}, {} }
        groups[k] = g
        n = n + 1
        order[n] = k
      end
      local list = g[side or 1]
      list[#list + 1] = v
    end, function()
      for i = 1, n do
        local k = order[i]
        local g = groups[k]
        emit_key(nxt, k, g[1], g[2])
      end
      fin()
    end
  end

end
