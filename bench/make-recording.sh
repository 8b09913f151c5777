#!/usr/bin/env bash
# Build a synthetic MediaRecorder-style recording for the merge benchmark, kept out of git:
# a noisy 720p test pattern encoded once to VP8 at a high bitrate, looped with -c copy into one
# WebM stream of at least SIZE_MIB with unknown-size clusters and no Cues (what a timeslice
# recorder writes), then cut into chunks of 1-4 MiB at arbitrary byte offsets.
# Usage: bench/make-recording.sh OUT_DIR SIZE_MIB
set -euo pipefail
OUT=$1 SIZE_MIB=$2
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"
FFMPEG=${FFMPEG_PATH:-$SCREENREC_TOOLS/ffmpeg/ffmpeg}
if [ -f "$OUT/.complete" ] && [ "$(cat "$OUT/.complete")" = "$SIZE_MIB" ]; then
  exit 0
fi
rm -rf "$OUT"
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clip_s=$(( SIZE_MIB < 64 ? 1 : 20 ))
"$FFMPEG" -hide_banner -loglevel error -f lavfi \
  -i "testsrc2=size=1280x720:rate=30,noise=alls=25:allf=t+u" -t "$clip_s" \
  -c:v libvpx -deadline realtime -cpu-used 8 -b:v 40M -minrate 40M -maxrate 40M -bufsize 20M \
  -g 120 -an -f webm "$work/clip.webm"
clip_bytes=$(stat -c %s "$work/clip.webm")
loops=$(( (SIZE_MIB * 1048576 + clip_bytes - 1) / clip_bytes ))
"$FFMPEG" -hide_banner -loglevel error -stream_loop $((loops - 1)) -i "$work/clip.webm" \
  -c copy -f webm -live 1 -cluster_size_limit 2000000 "$work/recording.webm"
python3 - "$work/recording.webm" "$OUT" <<'PY'
import random, sys
src, out = sys.argv[1], sys.argv[2]
rng = random.Random(42)
with open(src, "rb") as f:
    i = 0
    while True:
        data = f.read(rng.randint(1 << 20, 4 << 20))
        if not data:
            break
        with open(f"{out}/chunk-{i:06d}.webm", "wb") as c:
            c.write(data)
        i += 1
print(f"{i} chunks in {out}")
PY
echo "$SIZE_MIB" >"$OUT/.complete"
