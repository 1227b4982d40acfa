-- examples/recoverable_network_wordcount.lua: Spark's RecoverableNetworkWordCount, line for line
-- (org.apache.spark.examples.streaming; the Scala lines are the comments on the right). Word
-- counts of every 1 s batch of a TCP text stream, with words on an exclude list dropped and
-- counted; each batch's counts are appended to an output file. Killed and started again with
-- the same checkpoint directory, it goes on from where it was: no batch lost, none twice.
--
--   nc -lk 9999            (in another terminal: type lines)
--   dstream examples/recoverable_network_wordcount.lua localhost 9999 /tmp/ckpt /tmp/out.txt
--
-- With no server it prints its usage. It prints per batch:
--   Counts at time 1796604001000 ms [(b,1), (hello,2)]
--   Dropped 1 word(s) totally
--   Appending to /tmp/out.txt
local dstream = require("dstream")

-- object WordExcludeList { ... sc.broadcast(Seq("a", "b", "c")) ... }
-- object DroppedWordsCounter { ... sc.longAccumulator("DroppedWordsCounter") ... }
-- Spark makes these lazily, per process, because broadcasts and accumulators are not in its
-- checkpoints; a dstream job rebuilds its graph at every start, so plain locals made once
-- when the context is built are the same thing.
local function create_context(ip, port, output_path, checkpoint_directory, recovering)
  -- def createContext(ip: String, port: Int, outputPath: String, checkpointDirectory: String)
  if not recovering then
    print("Creating new context")                             -- println("Creating new context")
    os.remove(output_path)                                    -- if (outputFile.exists()) outputFile.delete()
  end
  local ssc = dstream.context {                               -- val ssc = new StreamingContext(sparkConf, Seconds(1))
    name = "RecoverableNetworkWordCount", batch = "1s",       -- .setAppName("RecoverableNetworkWordCount")
    checkpoint = checkpoint_directory,                        -- ssc.checkpoint(checkpointDirectory)
  }
  local exclude_list = ssc:broadcast({ a = true, b = true, c = true }) -- WordExcludeList.getInstance
  local dropped_words_counter = ssc:accumulator(0)            -- DroppedWordsCounter.getInstance
  local lines = ssc:socket_text_stream(ip, port)              -- val lines = ssc.socketTextStream(ip, port)
  local words = lines:flat_map(function(line) return line:gmatch("%S+") end) -- lines.flatMap(_.split(" "))
  local word_counts = words:map(function(w) return w, 1 end)  -- words.map((_, 1))
    :reduce_by_key(function(x, y) return x + y end)           --   .reduceByKey(_ + _)
  word_counts:foreach_rdd(function(rdd, time)                 -- wordCounts.foreachRDD { (rdd, time) =>
    local counts = rdd:filter(function(word, count)           --   val counts = rdd.filter { case (word, count) =>
      if exclude_list.value[word] then                        --     if (excludeList.value.contains(word)) {
        dropped_words_counter:add(count)                      --       droppedWordsCounter.add(count)
        return false                                          --       false
      end                                                     --     } else {
      return true                                             --       true }
    end):collect()                                            --   }.collect()
    table.sort(counts, function(x, y) return x[1] < y[1] end) -- (sorted here, to read and diff)
    local shown = {}                                          --   .mkString("[", ", ", "]")
    for i, kv in ipairs(counts) do shown[i] = "(" .. kv[1] .. "," .. kv[2] .. ")" end
    local output = string.format("Counts at time %d ms [%s]", time, table.concat(shown, ", "))
    print(output)                                             --   println(output)
    print(string.format("Dropped %d word(s) totally", dropped_words_counter.value))
    print("Appending to " .. output_path)                     --   println(s"Appending to ${outputFile.getAbsolutePath}")
    local f = assert(io.open(output_path, "a"))               --   Files.append(output + "\n", outputFile, ...)
    f:write(output, "\n")
    f:close()
  end)
  return ssc
end

-- def main(args: Array[String]): Unit = {
if #arg ~= 4 then                                             -- if (args.length != 4) {
  io.stderr:write("Usage: recoverable_network_wordcount.lua <hostname> <port> <checkpoint-directory> <output-file>\n")
  os.exit(1)                                                  --   System.exit(1)
end
local ip, port, checkpoint_directory, output_path = arg[1], tonumber(arg[2]), arg[3], arg[4]
local ssc = dstream.get_or_create(checkpoint_directory,       -- StreamingContext.getOrCreate(checkpointDirectory,
  function(recovering)                                        --   () => createContext(ip, port, outputPath, checkpointDirectory))
    return create_context(ip, port, output_path, checkpoint_directory, recovering)
  end)
ssc:start()                                                   -- ssc.start()
ssc:await_termination()                                       -- ssc.awaitTermination()
