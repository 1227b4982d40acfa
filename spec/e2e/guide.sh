#!/usr/bin/env bash
# spec/e2e/guide.sh: docs that cannot drift. Runs every runnable block of docs/guide.md and the
# README and compares what it prints with the text the docs show after it (the rules, and the
# markers for what is not run or compared loosely: spec/e2e/lib/guide_blocks.py). Once, on the
# normal build: the blocks are about what a user reads, not about the sanitizers.
source "$(dirname "$0")/lib/common.bash"
release_only
cd "$ROOT" && python3 spec/e2e/lib/guide_blocks.py "$DSTREAM" docs/guide.md README.md
