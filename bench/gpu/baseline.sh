#!/usr/bin/env bash
# The baseline phos must beat, measured on the GPU machine: NVIDIA's driver checkpoint API (driven by
# build/native/tools/ckpt-ctl, what cuda-checkpoint does) + CRIU, on the `counter` workload at several
# GPU memory sizes. Per size: lock+checkpoint, criu dump (process ends), criu restore, restore+unlock;
# the stall is the largest gap between the workload's own step timestamps across the cycle.
# Needs: bash bench/gpu/pack.sh here first, then on the GPU machine (device tool, carry .carry):
#   bash bench/gpu/baseline.sh [GiB ...]      (default: 1 4 16) -> $OUT/gpu-baseline.json
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/bench/results}
mkdir -p "$OUT"
SIZES=("${@:-1 4 16}")
read -r -a SIZES <<<"${SIZES[*]}"
REPS=${PHOS_BENCH_REPS:-3}
# MiB per size unit: 1024 (GiB) on the GPU; a dry run on cudasim sets e.g. 32.
UNIT_MIB=${PHOS_BENCH_UNIT_MIB:-1024}
CARRY="$ROOT/.carry/gpu"
criu() { CRIU_FAULT=130 "$CARRY/criu/criu-wrap" "$@"; }
log() { echo "[baseline $(date +%T)] $*" >&2; }

build() {
  mkdir -p build
  cmake -S native -B build/gpu -DCMAKE_BUILD_TYPE=Release -DPHOS_WORKLOADS_LINK_CUDASIM=ON >build/gpu-cmake.log 2>&1 || { tail -20 build/gpu-cmake.log; return 1; }
  cmake --build build/gpu -j"$(nproc)" >build/gpu-build.log 2>&1 || { tail -20 build/gpu-build.log; return 1; }
}

now_ms() { date +%s%3N; }

# One cycle on a fresh counter of $1 GiB; prints one JSON object.
cycle() {
  local gib=$1 dir=/dev/shm/phos-baseline app pid t0 t1 lock ckpt dump rest unl img restore_start first_after
  rm -rf "$dir" && mkdir -p "$dir/img"
  app="$dir/app.log"
  setsid build/gpu/workloads/counter --mib $((gib * UNIT_MIB)) --buffers $((gib < 4 ? gib * 2 : 8)) --steps 0 --step-ms 20 </dev/null >"$app" 2>&1 &
  pid=$!
  for _ in $(seq 600); do grep -q '^step 10 ' "$app" && break; sleep 0.1; done
  grep -q '^step 10 ' "$app" || { log "counter $gib GiB did not reach step 10"; tail -5 "$app" >&2; kill -9 $pid; return 1; }
  local before; before=$(grep -c '^step ' "$app")
  t0=$(now_ms)
  local s; s=$(build/gpu/tools/ckpt-ctl --timeout-ms 60000 suspend $pid) || { log "suspend failed: $s"; kill -9 $pid; return 1; }
  lock=$(echo "$s" | python3 -c 'import sys,json; r=[json.loads(l) for l in sys.stdin]; print(r[0]["ms"])')
  ckpt=$(echo "$s" | python3 -c 'import sys,json; r=[json.loads(l) for l in sys.stdin]; print(r[1]["ms"])')
  t1=$(now_ms); criu dump -t $pid -D "$dir/img" -o dump.log --timeout 600 || { log "criu dump failed"; grep -E 'Error' "$dir/img/dump.log" | tail -3 >&2; kill -9 $pid; return 1; }
  dump=$(( $(now_ms) - t1 ))
  wait $pid 2>/dev/null
  img=$(du -sb "$dir/img" | cut -f1)
  restore_start=$(now_ms)
  criu restore -D "$dir/img" -o restore.log -d --timeout 600 || { log "criu restore failed"; grep -E 'Error' "$dir/img/restore.log" | tail -3 >&2; return 1; }
  rest=$(( $(now_ms) - restore_start ))
  t1=$(now_ms); s=$(build/gpu/tools/ckpt-ctl resume $pid) || { log "resume failed: $s"; kill -9 $pid; return 1; }
  unl=$(( $(now_ms) - t1 ))
  for _ in $(seq 600); do [ "$(grep -c '^step ' "$app")" -ge $((before + 5)) ] && break; sleep 0.05; done
  kill -9 $pid 2>/dev/null
  grep -q 'BAD' "$app" && { log "counter reported BAD after restore"; return 1; }
  python3 - "$app" "$gib" "$lock" "$ckpt" "$dump" "$img" "$rest" "$unl" "$restore_start" "$before" <<'PY'
import json, sys
app, gib, lock, ckpt, dump, img, rest, unl, restore_start, before = sys.argv[1:]
steps = [(int(l.split()[1]), float(l.split()[3])) for l in open(app) if l.startswith('step ')]
gaps = [b[1] - a[1] for a, b in zip(steps, steps[1:])]
after = [t for n, t in steps if t > int(restore_start)]
print(json.dumps({"gib": int(gib), "lockMs": float(lock), "checkpointMs": float(ckpt), "criuDumpMs": int(dump),
  "imageBytes": int(img), "criuRestoreMs": int(rest), "driverRestoreUnlockMs": int(unl),
  "restoreToRunningMs": (after[0] - int(restore_start)) if after else None,
  "stallMs": max(gaps) if gaps else None, "stepsOk": all('BAD' not in l for l in open(app))}))
PY
  rm -rf "$dir"
}

main() {
  build || exit 1
  local results=() r
  log "driver $(nvidia-smi --query-gpu=driver_version,name --format=csv,noheader 2>/dev/null | head -1); criu $(criu --version | head -1)"
  for gib in "${SIZES[@]}"; do
    local reps=$REPS; [ "$gib" -ge 16 ] && reps=1
    for rep in $(seq "$reps"); do
      log "counter $gib GiB, repetition $rep"
      r=$(cycle "$gib") && { echo "$r"; results+=("$r"); }
    done
  done
  printf '%s\n' "${results[@]}" | python3 -c '
import json, sys, statistics, platform, subprocess, datetime
rows = [json.loads(l) for l in sys.stdin if l.strip()]
by = {}
for r in rows: by.setdefault(r["gib"], []).append(r)
med = lambda xs: statistics.median([x for x in xs if x is not None]) if any(x is not None for x in xs) else None
table = [{"gib": g, "reps": len(rs), **{k: med([r[k] for r in rs]) for k in rs[0] if k not in ("gib", "stepsOk")}, "allOk": all(r["stepsOk"] for r in rs)} for g, rs in sorted(by.items())]
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except FileNotFoundError:
    gpu = "no nvidia-smi (simulated driver?)"
doc = {"bench": "gpu-baseline", "system": "driver checkpoint API + CRIU", "machine": {"gpu": gpu, "kernel": platform.release()}, "date": datetime.date.today().isoformat(), "rows": table, "raw": rows}
json.dump(doc, open(sys.argv[1], "w"), indent=1)
print("| GiB | reps | lock ms | driver ckpt ms | CRIU dump ms | image GB | CRIU restore ms | driver restore+unlock ms | restore-to-running ms | stall ms | ok |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for t in table:
    print("| %d | %d | %.0f | %.0f | %.0f | %.2f | %.0f | %.0f | %s | %.0f | %s |" % (t["gib"], t["reps"], t["lockMs"], t["checkpointMs"], t["criuDumpMs"], t["imageBytes"]/1e9, t["criuRestoreMs"], t["driverRestoreUnlockMs"], "%.0f" % t["restoreToRunningMs"] if t["restoreToRunningMs"] is not None else "-", t["stallMs"], t["allOk"]))
' "$OUT/gpu-baseline.json"
}
main
