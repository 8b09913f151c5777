#!/usr/bin/env bash
# Profile LocalStack's CompleteMultipartUpload calls during two repetitions of the merge
# benchmark: LocalStack runs with Python's perf trampolines and perf records its process against
# the wall clock, so bench/completions.py can cut each completion's window out of LocalStack's
# log. Run it after `bash scripts/bench merge` has built everything (it needs perf).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export SCREENREC_RUN_DIR=$ROOT/.tmp/profile-services
OUT=$ROOT/.tmp/profile
mkdir -p "$OUT"
PYTHONPERFSUPPORT=1 bash scripts/services
trap 'bash scripts/services stop' EXIT
# shellcheck disable=SC1091
source "$SCREENREC_RUN_DIR/env"
cargo bench --bench merge --no-run
perf record -k CLOCK_REALTIME -F 499 -g -p "$(cat "$SCREENREC_RUN_DIR/localstack.pid")" \
  -o "$OUT/localstack.perf" &
PERF=$!
BENCH_REPS=2 BENCH_OUT=$OUT/merge.json cargo bench --bench merge
kill -INT $PERF
wait $PERF || true
python3 bench/completions.py "$OUT/localstack.perf" "$SCREENREC_RUN_DIR/localstack.log"
