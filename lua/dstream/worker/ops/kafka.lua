-- dstream/worker/ops/kafka.lua: what workers run for Kafka: the kafka_record operator (a FULL
-- layout record to a value, a pair or a table; decode, its rejected count and dead letters) and
-- the to_kafka terminals (kafka_sink, kafka_txn, kafka_txn_commit) with this VM's producers.
-- Registered into dstream.worker; the driver halves (dstream.sources.kafka,
-- dstream.sinks.kafka) are never loaded here.
local ffi = require("ffi")
local bit = require("bit")
local core = require("dstream.core")
local format = require("dstream.format")

pcall(ffi.cdef, [[
typedef struct ds_kafka_rec {
  int64_t offset;
  int64_t timestamp;
  int32_t partition;
  uint32_t key_len;
  uint32_t nheaders;
  uint16_t topic_len;
  uint8_t flags;
  uint8_t tstype;
} ds_kafka_rec;
]])

local REC_SIZE = 32
local REC_KEY, REC_VALUE = 1, 2
local rec_ptr = ffi.typeof("const ds_kafka_rec *")
local u8p = ffi.typeof("const uint8_t *")
local u32p = ffi.typeof("const uint32_t *")
local i32p = ffi.typeof("const int32_t *")
local ffi_string, ffi_cast, band, tonumber = ffi.string, ffi.cast, bit.band, tonumber


-- Parses a FULL-layout record (ds_kafka_rec and what follows).
local function parse(raw, want_headers)
  local p = ffi_cast(u8p, raw)
  local h = ffi_cast(rec_ptr, p)
  local pos = REC_SIZE
  local tlen = h.topic_len
  local topic = ffi_string(p + pos, tlen)
  pos = pos + tlen
  local klen = h.key_len
  local flags = h.flags
  local key
  if band(flags, REC_KEY) ~= 0 then key = ffi_string(p + pos, klen) end
  pos = pos + klen
  local nh = h.nheaders
  local headers
  if want_headers then headers = {} end
  for i = 1, nh do
    local nl = ffi_cast(u32p, p + pos)[0]
    local vl = ffi_cast(i32p, p + pos + 4)[0]
    if headers then
      headers[i] = { key = ffi_string(p + pos + 8, nl), value = vl >= 0 and ffi_string(p + pos + 8 + nl, vl) or nil }
    end
    pos = pos + 8 + nl + (vl > 0 and vl or 0)
  end
  local value
  if band(flags, REC_VALUE) ~= 0 then value = ffi_string(p + pos, #raw - pos) end
  local ts = tonumber(h.timestamp)
  return topic, tonumber(h.partition), tonumber(h.offset), key, value, ts >= 0 and ts or nil,
    headers, h.tstype
end

-- Whether s is valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF):
-- only then can a JSON string hold its bytes as they are.
local function valid_utf8(s)
  local i, n, byte = 1, #s, string.byte
  while i <= n do
    local c = byte(s, i)
    if c < 0x80 then
      i = i + 1
    else
      local len, min
      if c >= 0xC2 and c <= 0xDF then len, min = 2, 0x80
      elseif c >= 0xE0 and c <= 0xEF then len, min = 3, 0x800
      elseif c >= 0xF0 and c <= 0xF4 then len, min = 4, 0x10000
      else return false end
      if i + len - 1 > n then return false end
      local cp = c % (2 ^ (7 - len))
      for j = i + 1, i + len - 1 do
        local d = byte(s, j)
        if d < 0x80 or d > 0xBF then return false end
        cp = cp * 64 + (d - 0x80)
      end
      if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return false end
      i = i + len
    end
  end
  return true
end

-- A JSON string. Text that is not valid UTF-8 (an error message quoting binary) has its bytes
-- from 0x80 written as \u00XX, so the line stays valid JSON.
local function json_string(s)
  s = tostring(s)
  local pattern = valid_utf8(s) and '[%c"\\]' or '[%c"\\\128-\255]'
  return '"' .. s:gsub(pattern, function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\"
    elseif c == "\n" then return "\\n" elseif c == "\t" then return "\\t" end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out, byte, sub = {}, string.byte, string.sub
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1, c2 = math.floor(n / 262144) % 64, math.floor(n / 4096) % 64
    local c3, c4 = math.floor(n / 64) % 64, n % 64
    out[#out + 1] = sub(b64chars, c1 + 1, c1 + 1) .. sub(b64chars, c2 + 1, c2 + 1)
      .. (b and sub(b64chars, c3 + 1, c3 + 1) or "=") .. (c and sub(b64chars, c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

-- A key or value of a dead-letter line: '"key":"text"' when its bytes are UTF-8 text (JSON
-- holds them exactly), else '"key_base64":"..."', so every line parses and every byte comes
-- back; '"key":null' when the message has none.
local function json_bytes_field(name, s)
  if s == nil then return '"' .. name .. '":null' end
  if valid_utf8(s) then return '"' .. name .. '":' .. json_string(s) end
  return '"' .. name .. '_base64":"' .. base64(s) .. '"'
end

-- Message bytes of a record value: strings as they are, numbers and tables as text (JSON).
local function message_bytes(v)
  if v == nil or type(v) == "string" then return v end
  return format.value(v)
end

local producers = {} -- this VM's producers, by configuration

local function conf_key(conf)
  local keys = {}
  for k, v in pairs(conf or {}) do keys[#keys + 1] = k .. "=" .. v end
  table.sort(keys)
  return table.concat(keys, "\1")
end

-- A producer of this worker VM for the spec's brokers/conf/transactional id, made on first use.
local function producer_for(spec, who)
  local key = spec.brokers .. "\0" .. (spec.transactional_id or "") .. "\0" .. conf_key(spec.conf)
  local entry = producers[key]
  if entry and entry.p:fatal() then
    entry.p:close()
    producers[key], entry = nil, nil
  end
  if not entry then
    local p, err = core.kafka_producer {
      brokers = spec.brokers, conf = spec.conf, transactional_id = spec.transactional_id,
      timeout_ms = spec.timeout_ms,
    }
    if not p then error(who .. ": " .. tostring(err), 0) end
    entry = { p = p }
    producers[key] = entry
  end
  return entry
end

-- producer_for's entry, made ready to send to `topic`: the first use of a topic asks for its
-- metadata at once (p:prepare), or the first flush to a producer's second topic waited a
-- second for it (ds_kafka_producer_prepare). A failure here is not the task's: the sends and
-- the flush report what goes wrong.
local function producer_to(spec, topic, who)
  local entry = producer_for(spec, who)
  local ready = entry.ready or {}
  entry.ready = ready
  if not ready[topic] then
    entry.p:prepare(topic, spec.kafka_ms or spec.timeout_ms)
    ready[topic] = true
  end
  return entry
end

local function dead_letter(spec, topic, partition, offset, timestamp, key, value, err)
  local dl = spec.dead_letter
  if dl.file then
    local line = string.format('{"topic":%s,"partition":%d,"offset":%d,"timestamp":%s,%s,%s,"error":%s}\n',
      json_string(topic), partition, offset, timestamp and string.format("%d", timestamp) or "null",
      json_bytes_field("key", key), json_bytes_field("value", value), json_string(err))
    local ok, werr = core.kafka_append(dl.file, line)
    if not ok then error("kafka_stream dead letters: " .. werr, 0) end
  else
    local p = producer_to(dl, dl.topic, "kafka_stream dead letters").p
    p:mark()
    local ok, serr = p:send(dl.topic, value, key, nil, {
      { "dstream.error", err }, { "dstream.topic", topic },
      { "dstream.partition", tostring(partition) }, { "dstream.offset", string.format("%d", offset) },
    })
    if ok then ok, serr = p:flush() end
    if not ok then error("kafka_stream dead letters: " .. tostring(serr), 0) end
  end
end

local function with_traceback(e)
  return debug.traceback(tostring(e), 2)
end

return function(W)
  local operators, terminals, shipped, emit = W.operators, W.terminals, W.shipped, W.emit
  W.kafka_producer_to = producer_to -- (cluster mode's repartition and changelog writes too)

  -- A failing task's input record, quoted from its frame: where it came from, its key and value.
  W.record_text.kafka_record = function(_, raw)
    if type(raw) ~= "string" then return nil end
    local topic, partition, offset, key, value = parse(raw, false)
    return string.format("record kafka %s [%d] offset %d, key %s, value %s", topic, partition,
      offset, key == nil and "null" or format.brief(key, nil, 80),
      value == nil and "null" or format.brief(value, nil, 200))
  end

  -- A FULL-layout record to a value, a (key, value) pair or a table; decode and dead letters.
  function operators.kafka_record(spec, nxt, fin)
    local mode, policy = spec.mode, spec.on_error or "fail"
    local rejected = spec.rejected and shipped(spec.rejected)
    local decode = spec.decode and shipped(spec.decode)
    local meta = mode == "meta"
    return function(raw)
      local topic, partition, offset, key, value, ts, headers, tstype = parse(raw, meta)
      if decode then
        local ok, v, err = xpcall(decode, with_traceback, value)
        if not ok or v == nil then
          local msg = ok and tostring(err or "decode returned nil") or tostring(v)
          if policy == "fail" then
            error(string.format("kafka_stream decode rejected %s [%d] offset %d: %s", topic, partition,
              offset, msg), 0)
          end
          rejected:add(1)
          if policy == "dead_letter" then
            dead_letter(spec, topic, partition, offset, ts, key, value, (msg:gsub("\n.*", "")))
          end
          return
        end
        value = v
      end
      if mode == "value" then
        return nxt(value)
      elseif mode == "key" then
        if key == nil then key = false end
        if value == nil then value = false end
        return nxt(key, value)
      end
      return nxt({
        topic = topic, partition = partition, offset = offset, timestamp = ts,
        timestamp_type = tstype == 1 and "create" or tstype == 2 and "log_append" or nil,
        key = key, value = value, headers = headers,
      })
    end, fin
  end

  local function sender(spec, p)
    local keyf = spec.key and shipped(spec.key)
    local topic = spec.topic
    local n = 0
    local function push(a, b)
      local k, v
      if keyf then k = keyf(a, b) elseif b ~= nil then k = a end
      if b ~= nil then v = b else v = a end
      local ok, err = p:send(topic, message_bytes(v), message_bytes(k))
      if not ok then error("to_kafka: " .. err, 0) end
      n = n + 1
    end
    return push, function() return n end
  end

  -- to_kafka: produce every record of the task, then wait for the delivery reports: the task
  -- succeeds only if every message was delivered (else it fails and is retried).
  function terminals.kafka_sink(task, spec)
    local p = producer_to(spec, spec.topic, "to_kafka").p
    p:mark()
    local push, sent = sender(spec, p)
    return push, function()
      local ok, err = p:flush(spec.timeout_ms)
      if not ok then error("to_kafka: " .. tostring(err), 0) end
      emit(task, 0, 1, false, { sent() })
    end
  end

  -- to_kafka{ exactly_once = true }: one transaction per batch holding every record and the
  -- batch's input offsets (send_offsets_to_transaction).
  function terminals.kafka_txn(task, spec)
    local entry = producer_to(spec, spec.topic, "to_kafka")
    local p = entry.p
    -- On any failure the transaction is aborted (an abort that finds none is harmless) and the
    -- task fails, to be retried as a new transaction. A fatal error (fenced ...) makes
    -- producer_for replace the producer on the next attempt.
    local function check(ok, err)
      if ok then return end
      if entry.in_txn then p:abort() end
      entry.in_txn = false
      error("to_kafka (exactly once): " .. tostring(err), 0)
    end
    if entry.in_txn then -- an earlier attempt failed half-way (in the user's key function ...)
      p:abort()
      entry.in_txn = false
    end
    p:mark()
    check(p:begin())
    entry.in_txn = true
    local push, sent = sender(spec, p)
    return push, function()
      check(p:flush(spec.timeout_ms))
      for _, input in ipairs(spec.inputs or {}) do
        check(p:send_offsets(input.offsets, input.group_metadata))
      end
      if spec.defer_commit then -- committed by a kafka_txn_commit task after the checkpoint
        entry.prepared = spec.batch_time
        return emit(task, 0, 1, false, { sent() })
      end
      local ok, err = p:commit() -- aborts by itself when the commit fails
      entry.in_txn = false
      check(ok, err)
      emit(task, 0, 1, false, { sent() })
    end
  end

  -- The second phase: commits the transaction the batch's kafka_txn task left open.
  function terminals.kafka_txn_commit(task, spec)
    return function()
      error("to_kafka (commit): a commit task takes no records", 0)
    end, function()
      local entry = producer_for(spec, "to_kafka")
      if not entry.in_txn or entry.prepared ~= spec.batch_time then
        error(string.format("to_kafka (exactly once): the transaction of batch %d ms is not open on "
          .. "this worker any more (an earlier commit attempt failed and aborted it)", spec.batch_time), 0)
      end
      local ok, err = entry.p:commit()
      entry.in_txn, entry.prepared = false, nil
      if not ok then error("to_kafka (exactly once): commit of batch " .. string.format("%d", spec.batch_time)
        .. " ms failed: " .. tostring(err), 0) end
      emit(task, 0, 1, false, { 0 })
    end
  end
end
