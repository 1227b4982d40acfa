#!/usr/bin/env bash
# spec/e2e/cluster_bundles_defaults.sh: cluster mode's repartition bundles at the consumer
# settings a user gets: spec/cluster_bundles_spec.lua (one message per state partition and
# batch, counted with kcat; a bundle split past 512 KiB; an event-time window's largest
# timestamp in each partition's bundle; every pair in the state) run with BUNDLES_AT_DEFAULTS=1:
# no consumer conf (librdkafka's 45 s session timeout, 3 s heartbeat), and waits that allow the
# embedded broker's 44 s rebalances when a member's second consumer misses its group's first
# join. The twin of that spec's 3 s sessions. Usually under a minute, several when that race
# comes: CI starts it beside the e2e lanes (scripts/test.sh, E2E_ASIDE), on the release build
# only.
source "$(dirname "$0")/lib/common.bash"
release_only

require_commands kcat busted
cd "$ROOT" || exit 1
BUNDLES_AT_DEFAULTS=1 busted --lua="$DSTREAM" -o TAP spec/cluster_bundles_spec.lua >"$WORK/busted.out" 2>&1
grep -E '^(not )?ok ' "$WORK/busted.out" | sed 's/^\(\(not \)\?ok\) [0-9]* /\1 /'
grep -qE '^ok ' "$WORK/busted.out" && ! grep -qE '^not ok ' "$WORK/busted.out" || { tail -n 40 "$WORK/busted.out"; exit 1; }
