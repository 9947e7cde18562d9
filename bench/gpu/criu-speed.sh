#!/usr/bin/env bash
# How fast our CRIU dumps and restores a plain 1.5 GB Python heap on this machine, at two log levels
# (-v4 writes a line per page-pipe buffer; the agent runs -v3) and into /dev/shm or a huge-page tmpfs
# (PHOS_CRIU_SPEED_HUGE=1; needs root). Three runs each; prints one line per run.
#   here: bash bench/gpu/pack.sh     GPU machine: bash bench/gpu/criu-speed.sh
# It runs on any machine with criu: PHOS_CRIU names the binary (an A/B of phos's CRIU patch: the one
# deploy/install.sh built against the same source built without deploy/criu/*.patch); dev VMs need CRIU_FAULT=130.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
C=${PHOS_CRIU:-$CARRY/criu/criu-wrap}
mkdir -p /dev/shm/phos-criu && chmod 700 /dev/shm/phos-criu
HOG=$(mktemp /tmp/phos-hog-XXXX.py)
cat >"$HOG" <<'PY'
import os, time
b = bytearray(os.urandom(1 << 20)) * 1536
print("ready", flush=True)
while True: time.sleep(0.05)
PY
bases=(/dev/shm)
if [ -n "${PHOS_CRIU_SPEED_HUGE:-}" ]; then
  mkdir -p /tmp/phos-huge && mount -t tmpfs -o huge=always,size=8G phos-huge /tmp/phos-huge && bases+=(/tmp/phos-huge)
fi
for base in "${bases[@]}"; do
  for v in 4 3 4 3 4 3; do
    setsid python3 "$HOG" >"$HOG.out" 2>&1 </dev/null & P=$!
    for _ in $(seq 100); do grep -q ready "$HOG.out" && break; sleep 0.1; done
    D=$base/phos-criu-speed; rm -rf "$D"; mkdir -p "$D"
    s=$(now_ms); "$C" dump -t $P -D "$D" --shell-job -v$v -o dump.log; e=$(now_ms)
    "$C" restore -D "$D" --shell-job -d -v$v -o restore.log; r=$(now_ms)
    echo "$base -v$v dump $((e - s)) ms restore $((r - e)) ms image $(du -sm "$D" | cut -f1) MB"
    kill -9 $P 2>/dev/null; wait $P 2>/dev/null; rm -rf "$D"
  done
done
[ -d /tmp/phos-huge ] && mountpoint -q /tmp/phos-huge && umount /tmp/phos-huge
rm -f "$HOG" "$HOG.out"
