-- dstream/sources/kafka_assignment.lua: tells the user when a kafka_stream that the consumer
-- group assigns (assign = "group", cluster mode) has had no partition for long.
--
--   local watch = assignment.watch{ name =, group =, conf = }   -- once, when the source opens
--   watch:check(partitions, member_id, rebalances)              -- at every batch (driver)
--
-- Such a stream reads nothing while the group gives it nothing, and says nothing else: a topic
-- that does not exist, more members than partitions, a member killed without leaving that the
-- group waits for, a coordinator that does not answer all look alike from inside the job. A
-- healthy group assigns within its session timeout (a join waits for members that have not
-- rejoined at most that long; the embedded broker waits it, less a second, at every
-- rebalance but the first, and a move of cooperative-sticky partitions is two rebalances),
-- so a stretch longer than two session timeouts and the 3 s first-join delay is worth a
-- warning: one per stretch, naming the group and what to check, and a line when it ends.
local kafka = require("dstream.kafka")
local core = require("dstream.core")

local M = {}

local DEFAULT_SESSION_MS = 45000 -- librdkafka's session.timeout.ms
local FIRST_JOIN_MS = 3000 -- the brokers' group.initial.rebalance.delay.ms

local Watch = {}
Watch.__index = Watch

-- How long a stretch without partitions may last before the warning (ms).
function M.limit_ms(conf)
  local session = tonumber(conf and conf["session.timeout.ms"]) or DEFAULT_SESSION_MS
  return 2 * session + FIRST_JOIN_MS
end

function M.watch(opts)
  return setmetatable({
    name = opts.name, group = opts.group, limit_ms = M.limit_ms(opts.conf),
    since = core.now_ms(), warned = false,
  }, Watch)
end

function Watch:check(partitions, member_id, rebalances)
  local now = core.now_ms()
  if partitions > 0 then
    if self.warned then
      kafka.log("warn", string.format("kafka_stream %s: group %s assigned %d partition(s) to this process "
        .. "after %d s without any", self.name, self.group, partitions, math.floor((now - self.since) / 1000)))
    end
    self.since, self.warned = nil, false
    return
  end
  self.since = self.since or now
  if self.warned or now - self.since < self.limit_ms then return end
  self.warned = true
  kafka.log("warn", string.format("kafka_stream %s: group %s has assigned no partition to this process "
    .. "for %d s (member id: %s; %d rebalance(s) so far), so nothing is read. Check that the topics exist "
    .. "and have partitions, that the group has no more members than the topics have partitions, "
    .. "and that the brokers answer (stream:kafka_stats().last_error); a member killed without leaving holds "
    .. "the group until its session.timeout.ms ends",
    self.name, self.group, math.floor((now - self.since) / 1000),
    (member_id and member_id ~= "") and member_id or "none yet", rebalances or 0))
end

return M
