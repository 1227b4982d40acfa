-- dstream/sql/joins.lua: the JOINs of a plan (methods of plan.lua's Planner). A join keys each
-- side by its side of the ON equalities and keeps the joined tables' records together in an
-- array (rec[i] is table i's record, nil for a LEFT JOIN miss): batch by batch for streams, a
-- cached static side for a stream with a table, or within windows for two event-time streams.
local codegen = require("dstream.sql.codegen")
local grammar = require("dstream.sql.grammar")
local records = require("dstream.sql.records")
local stream_mod = require("dstream.stream")

local var, extract = records.var, records.extract

return function(Planner)
  local function conjuncts(e, out)
    if e.tag == "binop" and e.op == "and" then conjuncts(e.l, out); conjuncts(e.r, out)
    else out[#out + 1] = e end
    return out
  end
  local function tables_of(e, out)
    if type(e) ~= "table" then return out end
    if e.tag == "col" and e.ti then out[e.ti] = true end
    for k, v in pairs(e) do if type(v) == "table" and k ~= "t" then tables_of(v, out) end end
    return out
  end

  function Planner:key_expr(gen, exprs)
    if #exprs == 1 then
      local v = gen:once(exprs[1])
      return v, ("%s == nil"):format(v)
    end
    local vals, nulls = {}, {}
    for i, e in ipairs(exprs) do
      vals[i] = gen:once(e)
      nulls[i] = vals[i] .. " == nil"
    end
    return "{ " .. table.concat(vals, ", ") .. " }", table.concat(nulls, " or ")
  end

  -- The ON equalities of join j (table i): the expressions over the tables before i, and the
  -- matching ones over table i.
  function Planner:on_sides(j, i)
    local q = self.q
    local left_exprs, right_exprs = {}, {}
    local function only_before(ts)
      for ti in pairs(ts) do if ti >= i then return false end end
      return next(ts) ~= nil
    end
    local function only_this(ts)
      for ti in pairs(ts) do if ti ~= i then return false end end
      return next(ts) ~= nil
    end
    for _, c in ipairs(conjuncts(j.on, {})) do
      local ok = c.tag == "binop" and c.op == "="
      if ok then
        local lt, rt_ = tables_of(c.l, {}), tables_of(c.r, {})
        if only_before(lt) and only_this(rt_) then
          left_exprs[#left_exprs + 1], right_exprs[#right_exprs + 1] = c.l, c.r
        elseif only_before(rt_) and only_this(lt) then
          left_exprs[#left_exprs + 1], right_exprs[#right_exprs + 1] = c.r, c.l
        else ok = false end
      end
      if not ok then
        error(grammar.caret(q.text, c.pos, "JOIN ... ON takes equalities between the joined table and the tables before it (a.x = b.y AND ...); put other conditions in WHERE"), 0)
      end
    end
    return left_exprs, right_exprs
  end

  function Planner:join(ds, j, i)
    local q = self.q
    local left_exprs, right_exprs = self:on_sides(j, i)
    local t = q.scope[i]
    -- Left side: the record so far (table 1's raw record, or the array of joined records).
    local lfn = self:with_used(left_exprs, function()
      local lgen = self:row_gen(self.rec and "rec" or nil)
      local lkey, lnull = self:key_expr(lgen, left_exprs)
      lgen:emit(("if %s then return %q, %s end"):format(lnull, "\0NULL-left", self.rec and "rec" or "(b ~= nil and { a, b } or a)"))
      lgen:emit(("return %s, %s"):format(lkey, self.rec and "rec" or "(b ~= nil and { a, b } or a)"))
      local texts = {}
      for k, e in ipairs(left_exprs) do texts[k] = self:text(e) end
      return self:step("map", "key the left side by " .. table.concat(texts, ", "), lgen:chunk(self:params()))
    end)
    local rfn = self:with_used(right_exprs, function()
      local rgen = codegen.new(function(e) return var(e.ti, e.ci) end)
      for _, l in ipairs(extract(t, "a", "b")) do rgen:emit(l) end
      local rkey, rnull = self:key_expr(rgen, right_exprs)
      -- A NULL key joins nothing: such records get a key no left record has.
      rgen:emit(("if %s then return %q, (b ~= nil and { a, b } or a) end"):format(rnull, "\0NULL-right"))
      rgen:emit(("return %s, (b ~= nil and { a, b } or a)"):format(rkey))
      return self:step("map", "key " .. t.alias .. " by its side of ON", rgen:chunk("a, b"))
    end)
    local n = i - 1
    local flat = {}
    if self.rec then
      for k = 1, n do flat[k] = ("l[%d]"):format(k) end
    else flat[1] = "l" end
    flat[#flat + 1] = "v[2]"
    local ffn = self:step("map", "keep the joined records together", ("return function(_, v)\n  local l = v[1]\n  return { %s }\nend")
      :format(table.concat(flat, ", ")))
    local right = t.def.source
    local kind = j.kind == "left" and "left_outer_join" or "join"
    self:note(kind, ("%s %s"):format(j.kind == "left" and "LEFT JOIN" or "JOIN", t.def.name))
    local lkeyed = ds:map(lfn)
    local rkeyed = right:map(rfn)
    local joined
    if stream_mod.is_stream(lkeyed) == stream_mod.is_stream(rkeyed) then
      if stream_mod.is_stream(lkeyed) and right.ctx.cluster then
        -- Batch by batch, each process would join only what it reads (Stream.join refuses it
        -- too, in the Lua API's words).
        error(grammar.caret(q.text, j.pos, "in cluster mode a JOIN of two stream tables batch by batch"
          .. " would join only the rows each process reads: join them within windows (GROUP BY"
          .. " TUMBLE(...) or HOP(...) over the JOIN, both tables with event_time), or a static table in place of one of the stream tables in the JOIN"), 0)
      end
      joined = lkeyed[kind](lkeyed, rkeyed)
    elseif stream_mod.is_stream(lkeyed) then
      -- A static table joined at every batch is keyed once and kept (cache), not recomputed.
      rkeyed = rkeyed:cache()
      joined = lkeyed:transform(function(r) return r[kind](r, rkeyed) end)
    else
      lkeyed = lkeyed:cache()
      joined = rkeyed:transform(function(r) return lkeyed[kind](lkeyed, r) end)
    end
    self.rec = true
    return joined:map(ffn)
  end

  -- Two stream tables joined within windows: both keyed by their side of ON and tagged, one
  -- stream with one event time (so one watermark), group_by_key_and_window, then each final
  -- window's records of both sides paired (rec = { left, right, ws = start, we = end }). The
  -- GROUP BY after it runs per batch: every window it sees is final (or, with emit = "update",
  -- whole again).
  function Planner:window_join(j, window, opts)
    local q = self.q
    local function fail(msg) error(grammar.caret(q.text, window.pos, msg), 0) end
    if #q.scope ~= 2 then fail("a window over a JOIN takes two stream tables") end
    if window.kind == "session" then fail("SESSION over a JOIN is not supported: use TUMBLE or HOP") end
    local delays = {}
    for i, t in ipairs(q.scope) do
      if not (t.def.is_stream and t.def.event_time) then
        fail(("a window over a JOIN needs two stream tables with event time; '%s' has none (to_table(name, columns, { event_time = \"ts\" }))")
          :format(t.def.name))
      end
      delays[i] = t.def.watermark and require("dstream.util").parse_duration(t.def.watermark) or 0
    end
    -- Each side's largest event time, gathered by an accumulator (max) from the tagging maps.
    local ctx = q.scope[1].def.source.ctx
    local maxes = { ctx:accumulator(-math.huge, math.max), ctx:accumulator(-math.huge, math.max) }
    local left_exprs, right_exprs = self:on_sides(j, 2)
    local tagged = {}
    for i, exprs in ipairs({ left_exprs, right_exprs }) do
      local t = q.scope[i]
      local et_ci
      for ci, c in ipairs(t.def.columns) do if c:lower() == t.def.event_time:lower() then et_ci = ci end end
      local fn = self:with_used(exprs, function()
        local gen = codegen.new(function(e) return var(e.ti, e.ci) end)
        for _, l in ipairs(extract(t, "a", "b")) do gen:emit(l) end
        local ts = var(i, et_ci)
        gen:emit(("if %s ~= nil then max_ts:add(%s) end"):format(ts, ts))
        local key, null = self:key_expr(gen, exprs)
        local value = ("{ %d, (b ~= nil and { a, b } or a), %s }"):format(i, ts)
        gen:emit(("if %s then return %q, %s end"):format(null, i == 1 and "\0NULL-left" or "\0NULL-right", value))
        gen:emit(("return %s, %s"):format(key, value))
        return self:step("map", ("key %s by its side of ON, tagged %d, with its event time"):format(t.alias, i),
          "local max_ts = ...\n" .. gen:chunk("a, b"), maxes[i])
      end, { { i, et_ci } })
      tagged[i] = t.def.source:map(fn)
    end
    self:note("union", "both sides, one event time")
    local tsfn = self:step("event_time", ("the tagged records' time; watermark: the smaller of the sides' (%d ms and %d ms behind their largest time), emit %s")
      :format(delays[1], delays[2], opts.emit or "final"), "return function(_, v) return v[3] end")
    -- (The watermark option is what cluster mode's state partitions go by: they take the
    -- largest time heard of less the delay, so the larger of the tables' delays. One process
    -- uses the watermark function set below.)
    local ds = tagged[1]:union(tagged[2]):event_time(tsfn, { emit = opts.emit,
      watermark = math.max(delays[1], delays[2]) .. "ms" })
    -- The watermark of a join is its slower side's, as Flink's: each side's largest time minus
    -- its table's delay, the smaller of the two (none until both sides have had records). The
    -- event_time stage's own watermark (the union's largest time) is replaced on its Event.
    ds.event.watermark = function()
      local w
      for i, acc in ipairs(maxes) do
        local m = acc.value
        if m == -math.huge then return nil end
        if not w or m - delays[i] < w then w = m - delays[i] end
      end
      return w
    end
    self:note("group_by_key_and_window", ("%s: length %d ms, slide %d ms (event time)"):format(window.kind:upper(), window.len, window.slide))
    ds = ds:group_by_key_and_window(window.len / 1000, window.slide / 1000)
    local pair_src = ([[
  return function(_, w)
    local left, right = {}, {}
    for _, v in ipairs(w.values) do
      if v[1] == 1 then left[#left + 1] = v[2] else right[#right + 1] = v[2] end
    end
    local out, ws, we = {}, w.start, w["end"]
    for _, l in ipairs(left) do
      for _, r in ipairs(right) do out[#out + 1] = { l, r, ws = ws, we = we } end
      if %s and #right == 0 then out[#out + 1] = { l, nil, ws = ws, we = we } end
    end
    return out
  end]]):format(j.kind == "left" and "true" or "false")
    local ffn = self:step("flat_map", (j.kind == "left" and "LEFT JOIN " or "JOIN ") .. q.scope[2].def.name
      .. ": the window's records of both sides paired", pair_src)
    self.rec, self.window_rec = true, true
    return ds:flat_map(ffn)
  end
end
