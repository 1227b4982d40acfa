-- bench/wordcount_user.lua: the user code of the word count workloads (bench/wordcount.lua,
-- socket_wordcount.lua, kafka_wordcount.lua), the same under dstream and bare LuaJIT.
--   local user = require("wordcount_user")("words" | "gmatch")
--   user.split(line) -> iterator of words; user.pair(w) -> w, 1; user.add(a, b);
--   user.summary(iter) -> { { distinct, total } } of an iterator of (word, count)
local text = require("dstream.text")

return function(how)
  local user = {}
  if how == "gmatch" then
    user.split = function(line) return line:gmatch("%S+") end
  else
    user.split = text.words -- flat_map(text.words): lines in C memory are split without a string each
  end
  function user.pair(w) return w, 1 end
  function user.add(a, b) return a + b end
  -- Per partition: the number of distinct words and the sum of their counts.
  function user.summary(iter)
    local distinct, total = 0, 0
    for _, c in iter do
      distinct, total = distinct + 1, total + c
    end
    return { { distinct, total } }
  end
  return user
end
