-- dstream/monitor/address.lua: the UI's listening address: parsing `ui =` / --ui, and which
-- hosts are this machine's loopback.
local M = {}

-- "127.0.0.1:4040", "localhost:4040", "[::1]:4040", ":4040", "4040", 4040, true -> host, port
local function parse_address(v)
  if v == true then return "127.0.0.1", 4040 end
  if type(v) == "number" then v = tostring(v) end
  if type(v) ~= "string" then return nil, "expected an address like \"127.0.0.1:4040\", got " .. type(v) end
  local host, port = v:match("^%[([%x:]+)%]:(%d+)$")
  if not host then host, port = v:match("^([^:]*):(%d+)$") end
  if not host and v:match("^%d+$") then host, port = "", v end
  port = tonumber(port)
  if not host or not port or port > 65535 then
    return nil, "expected an address like \"127.0.0.1:4040\" (host:port), got " .. string.format("%q", v)
  end
  if host == "" then host = "127.0.0.1" end
  return host, port
end

-- An IPv4 address in any form inet_aton(3) reads ("127.1", "0x7f.1", "2130706433") as
-- four numbers, or nil.
local function ipv4_bytes(s)
  local parts = {}
  for p in (s .. "."):gmatch("([^.]*)%.") do parts[#parts + 1] = p end
  if #parts < 1 or #parts > 4 then return nil end
  local nums = {}
  for i, p in ipairs(parts) do
    local n
    if p:match("^0[xX]%x*$") then n = tonumber(p:sub(3) ~= "" and p:sub(3) or "0", 16)
    elseif p:match("^0[0-7]*$") then n = tonumber(p, 8)
    elseif p:match("^[1-9]%d*$") then n = tonumber(p, 10) end
    if not n then return nil end
    nums[i] = n
  end
  local last, bytes = nums[#nums], {}
  for i = 1, #nums - 1 do
    if nums[i] > 255 then return nil end
    bytes[i] = nums[i]
  end
  local room = 4 - (#nums - 1) -- bytes the last number fills
  if last >= 256 ^ room then return nil end
  for i = 4, #nums, -1 do
    bytes[i] = last % 256
    last = math.floor(last / 256)
  end
  return bytes
end

-- An IPv6 address as eight 16-bit groups (a trailing dotted IPv4 part allowed), or nil.
local function ipv6_groups(s)
  if not s:find(":", 1, true) or s:find(":::", 1, true) then return nil end
  local head, tail = s, nil
  local a, b = s:find("::", 1, true)
  if a then
    head, tail = s:sub(1, a - 1), s:sub(b + 1)
    if tail:find("::", 1, true) then return nil end
  end
  local function groups(text)
    local out = {}
    if text == "" then return out end
    for g in (text .. ":"):gmatch("([^:]*):") do out[#out + 1] = g end
    local last = out[#out]
    if last and last:find(".", 1, true) then
      local v4 = ipv4_bytes(last)
      if not v4 or not last:match("^%d+%.%d+%.%d+%.%d+$") then return nil end
      out[#out] = string.format("%x", v4[1] * 256 + v4[2])
      out[#out + 1] = string.format("%x", v4[3] * 256 + v4[4])
    end
    for i, g in ipairs(out) do
      if not g:match("^%x%x?%x?%x?$") then return nil end
      out[i] = tonumber(g, 16)
    end
    return out
  end
  local h, t = groups(head), tail and groups(tail) or {}
  if not h or not t then return nil end
  local fill = 8 - #h - #t
  if (tail and fill < 1) or (not tail and fill ~= 0) then return nil end
  local all = {}
  for _, g in ipairs(h) do all[#all + 1] = g end
  for _ = 1, fill do all[#all + 1] = 0 end
  for _, g in ipairs(t) do all[#all + 1] = g end
  return all
end

-- Any loopback address: "localhost", 127.0.0.0/8 in every form inet_aton reads ("127.1"),
-- ::1 however written, and IPv4-mapped ::ffff:127.x.y.z.
local function is_loopback(host)
  if host == "localhost" then return true end
  local v4 = ipv4_bytes(host)
  if v4 then return v4[1] == 127 end
  local g = ipv6_groups(host)
  if not g then return false end
  for i = 1, 5 do
    if g[i] ~= 0 then return false end
  end
  if g[6] == 0 and g[7] == 0 and g[8] == 1 then return true end
  return g[6] == 0xffff and math.floor(g[7] / 256) == 127
end

-- The address as the server binds it: IPv4 forms as a dotted quad ("127.1" -> "127.0.0.1").
local function canonical_host(host)
  local v4 = ipv4_bytes(host)
  return v4 and table.concat(v4, ".") or host
end
M.parse_address, M.is_loopback, M.canonical_host = parse_address, is_loopback, canonical_host

return M
