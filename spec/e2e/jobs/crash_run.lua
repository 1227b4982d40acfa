-- spec/e2e/jobs/crash_run.lua: how the crash tests' jobs run and report, in one place.
--   require("crash_run")(ctx)   (after package.path gains this directory)
-- Starts ctx, prints "ready recovered=<ms>|none" (the checkpoint time it resumed from) and,
-- once its first batch holding records has completed, "first-input <wall clock ms>" (the
-- scripts time each run's catch-up with it); then runs until stopped (SIGTERM: gracefully).
return function(ctx)
  local reported = false
  ctx:on_batch_completed(function(info)
    if not reported and info.records > 0 then
      reported = true
      print(string.format("first-input %d", info.finished_at))
      io.stdout:flush()
    end
  end)
  ctx:start()
  print("ready recovered=" .. (ctx.recovered_from and string.format("%d", ctx.recovered_from) or "none"))
  io.stdout:flush()
  ctx:await_termination()
end
