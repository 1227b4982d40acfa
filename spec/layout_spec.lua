-- The C structs worker Lua reads through the FFI are declared twice: in C (runtime/ds_block.h,
-- runtime/ds_task.h, runtime/ds_words.h) and in the worker's cdefs. A field changed on one side only would make
-- workers read the wrong bytes, silently; this compares the FFI's layout with the compiler's,
-- which core.struct_layouts() reports (the C side also asserts the sizes it was written for).
local ffi = require("ffi")
local core = require("dstream.core")
require("dstream.worker.cdefs") -- for its ffi.cdef

describe("struct layouts shared with the FFI", function()
  local layouts = core.struct_layouts()

  it("lists the structs workers use", function()
    for _, name in ipairs({ "ds_slice", "ds_output", "ds_task", "ds_words_pos" }) do
      assert.is_table(layouts[name], name)
    end
  end)

  for name, layout in pairs(layouts) do
    it(name .. " has the same size and field offsets in C and in the FFI", function()
      assert.equal(layout.size, ffi.sizeof(name), name .. " size")
      local n = 0
      for field, offset in pairs(layout.fields) do
        assert.equal(offset, ffi.offsetof(name, field), name .. "." .. field)
        n = n + 1
      end
      assert.is_true(n > 0, name .. " has fields")
    end)
  end
end)
