#!/usr/bin/env bash
# Install the bundled ffmpeg: the static ffmpeg 9.0.2 build inside the PyPI wheel
# imageio-ffmpeg==0.8.1, checked against SHA256SUMS beside this script. It needs only
# glibc >= 2.28, so the same binary serves local runs, the tests and the Lambda layer.
# Installs to $SCREENREC_TOOLS/ffmpeg/ffmpeg (default /opt/screenrec-tools); idempotent.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../../scripts/lib.sh"
TOOLS=$SCREENREC_TOOLS
WHEEL=imageio_ffmpeg-0.8.1-py3-none-manylinux_2_28_x86_64.whl
MEMBER=imageio_ffmpeg/binaries/ffmpeg-linux-x86_64-v9.0.2
DEST=$TOOLS/ffmpeg/ffmpeg

want() { awk -v f="$1" '$2 == f { print $1 }' "$HERE/SHA256SUMS"; }
binary_sha=$(want ffmpeg-linux-x86_64-v9.0.2)

if [ -x "$DEST" ] && [ "$(sha256sum "$DEST" | cut -d' ' -f1)" = "$binary_sha" ]; then
  exit 0
fi
[ "$(uname -m)" = x86_64 ] || { echo "the bundled ffmpeg is x86_64 only; set FFMPEG_PATH" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "downloading imageio-ffmpeg 0.8.1 (ffmpeg 9.0.2)"
python3 -m pip download -q --no-deps imageio-ffmpeg==0.8.1 -d "$work"
echo "$(want "$WHEEL")  $work/$WHEEL" | sha256sum -c --quiet
python3 - "$work/$WHEEL" "$MEMBER" "$work/ffmpeg" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
echo "$binary_sha  $work/ffmpeg" | sha256sum -c --quiet
chmod 755 "$work/ffmpeg"
mkdir -p "$(dirname "$DEST")"
mv "$work/ffmpeg" "$DEST"
echo "installed $DEST"
