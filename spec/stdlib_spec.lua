-- stdlib/dstream/ holds helpers for the code inside user closures (dstream.text, ...): they
-- run on the workers and on the driver alike, so they may use LuaJIT's own libraries and each
-- other, never the engine (dstream.core, the driver's or the workers' modules) (issue 16).
package.path = "spec/helpers/?.lua;" .. package.path
local H = require("engine")

local ALLOWED = { ffi = true, bit = true, jit = true, ["string.buffer"] = true, ["table.new"] = true,
  ["table.clear"] = true, ["jit.util"] = true }

-- Module names under stdlib/dstream, folders included ("text", "ml.kmeans", ...).
local function stdlib_modules()
  local out = {}
  local function walk(dir, prefix)
    for _, name in ipairs(H.listdir(dir)) do
      local mod = name:match("^(.+)%.lua$")
      if mod then
        out[#out + 1] = prefix .. mod
      elseif not name:find("%.") then
        walk(dir .. "/" .. name, prefix .. name .. ".")
      end
    end
  end
  walk("stdlib/dstream", "")
  table.sort(out)
  return out
end

describe("the stdlib", function()
  local mods = stdlib_modules()

  it("has modules (the check below looks at something)", function()
    assert.is_true(#mods >= 1)
  end)

  for _, mod in ipairs(mods) do
    it("dstream." .. mod .. " requires no engine module", function()
      local src = H.read_file("stdlib/dstream/" .. mod:gsub("%.", "/") .. ".lua")
      local own = {}
      for _, m in ipairs(mods) do own["dstream." .. m] = true end
      for name in src:gmatch("require%s*%(?%s*[\"']([^\"']+)[\"']") do
        assert.is_true(ALLOWED[name] or own[name] or false,
          "stdlib/dstream/" .. mod:gsub("%.", "/") .. ".lua requires " .. name .. ", which is not for user closures")
      end
    end)

    it("dstream." .. mod .. " loads inside a worker closure", function()
      H.with_context({ workers = 1 }, function(ctx)
        local loaded = ctx:parallelize({ "dstream." .. mod }, 1):map(function(name)
          return type(require(name))
        end):collect()
        assert.same({ "table" }, loaded)
      end)
    end)
  end
end)
