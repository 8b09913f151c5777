#!/usr/bin/env bash
# The merge benchmark for another commit and for the working tree, back to back against the same
# services, to tell a change in the code from this machine's drift. Usage:
#   bash bench/compare.sh REV [ROUNDS]
# Builds REV in a worktree under .tmp/compare (sharing target/, so only screenrec rebuilds),
# then runs `cargo bench --bench merge` for REV and for the working tree in turn, ROUNDS times
# (1 unless given; BENCH_REPS repetitions each, 3 unless set), against the services that
# scripts/services starts. Results: .tmp/compare/{REV,HEAD}-{round}.json and the printed runs.
set -euo pipefail
REV=$1 ROUNDS=${2:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export SCREENREC_RUN_DIR=$ROOT/.tmp/compare/services
bash scripts/services
trap 'bash scripts/services stop' EXIT
# shellcheck disable=SC1091
source "$SCREENREC_RUN_DIR/env"
bash bench/make-recording.sh bench/data/big 1024
bash bench/make-recording.sh bench/data/small 10
OLD=$ROOT/.tmp/compare/$REV
[ -d "$OLD" ] || git worktree add -f "$OLD" "$REV" >/dev/null
export CARGO_TARGET_DIR=$ROOT/target BENCH_REPS=${BENCH_REPS:-3}
export BENCH_DATA=$ROOT/bench/data/big BENCH_DATA_SMALL=$ROOT/bench/data/small
for round in $(seq "$ROUNDS"); do
  for side in "$REV" HEAD; do
    dir=$ROOT; [ "$side" = HEAD ] || dir=$OLD
    mkdir -p "$dir/bench/data"
    (cd "$dir" && cargo build --release --bin screenrec -q &&
      BENCH_OUT=$ROOT/.tmp/compare/$side-$round.json cargo bench --bench merge -q 2>&1 |
      grep -E '^run|^\| \(|within|peak' | sed "s/^/$side, round $round: /")
  done
done
