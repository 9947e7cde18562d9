#!/usr/bin/env bash
# Packs what the GPU machine lacks into .carry/gpu (git-ignored; name it in the device tool's `carry`):
# the CRIU we built with the shared libraries ldd lists for it (not glibc: the target has its own).
# Run here, before a GPU run:  bash bench/gpu/pack.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT="$ROOT/.carry/gpu"
CRIU=${PHOS_CRIU:-/usr/local/sbin/criu}
[ -x "$CRIU" ] || { echo "pack: $CRIU missing; run: bash deploy/install.sh" >&2; exit 1; }
rm -rf "$OUT/criu" && mkdir -p "$OUT/criu/lib"
cp "$CRIU" "$OUT/criu/criu"
ldd "$CRIU" | awk '$3 ~ /^\// {print $3}' | grep -vE '/(libc|libm|libdl|libpthread|ld-linux[^/]*)\.so' | while read -r lib; do cp -L "$lib" "$OUT/criu/lib/"; done
du -sh "$OUT"
