#!/usr/bin/env bash
# phos on the GPU machine, next to the baseline in the same run: the node agent (bundled, on a carried
# Node.js) manages `counter` at several GPU memory sizes; per size: pre-dump (the app keeps running:
# its stall is the largest gap between its own step stamps), dump (process ends), restore (time until the
# first new step). Then bench/gpu/baseline.sh measures driver checkpoint + CRIU on the same sizes.
#   here:            bash bench/gpu/pack.sh
#   GPU machine:     bash bench/gpu/phos.sh [GiB ...]     (device tool, carry .carry) -> $OUT/gpu-phos.json
# A dry run on cudasim: LD_LIBRARY_PATH=build/gpu/cudasim PHOS_BENCH_UNIT_MIB=32 bash bench/gpu/phos.sh 1
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
read -r -a SIZES <<<"${*:-1 4 16}"
REPS=${PHOS_BENCH_REPS:-3}
# Sizes of 16 GiB and more take ~40 s a cycle: once by default (PHOS_BENCH_REPS_LARGE=3 for a median).
REPS_LARGE=${PHOS_BENCH_REPS_LARGE:-1}
UNIT_MIB=${PHOS_BENCH_UNIT_MIB:-1024}
STATE=/dev/shm/phos-bench
log() { echo "[phos-bench $(date +%T)] $*" >&2; }
phos() { PHOS_CONTROL_SOCK=$STATE/control.sock "$NODE" "$CARRY/bundle/phos.mjs" "$@"; }

build() { gpu_build build/gpu; }

# The agent stages a pre-dump's CRIU image on a huge-page tmpfs (image.stageDir) unless
# PHOS_BENCH_STAGE=none; without root (no mount) CRIU writes into the image directly.
export STAGE_MODE=none
stage_yaml() {
  [ "${PHOS_BENCH_STAGE:-huge}" = huge ] || return 0
  mkdir -p "$STATE/stage" && mount -t tmpfs -o huge=always,mode=0700 phos-stage "$STATE/stage" 2>/dev/null \
    || { log "no huge-page stage (mount failed): CRIU writes into the image"; return 0; }
  echo "  stageDir: $STATE/stage"
}
unstage() { mountpoint -q "$STATE/stage" 2>/dev/null && umount "$STATE/stage"; return 0; }

start_agent() {
  unstage; rm -rf "$STATE" && mkdir -p "$STATE"
  local stage; stage=$(stage_yaml)
  mountpoint -q "$STATE/stage" 2>/dev/null && export STAGE_MODE=huge
  cat >"$STATE/agent.yaml" <<YAML
socket: $STATE/agent.sock
controlSocket: $STATE/control.sock
stateDir: $STATE/state
node: gpu0
pidRange: "25000-29999"
libphos: $ROOT/build/gpu/hijack/libphos.so
criu: $CARRY/criu/criu-wrap
image:
  fsync: false
$stage
env:
  LD_LIBRARY_PATH: "${LD_LIBRARY_PATH:-}"
YAML
  UV_THREADPOOL_SIZE=16 PHOS_LOG_LEVEL=${PHOS_LOG_LEVEL:-info} "$NODE" "$CARRY/bundle/agent.mjs" --config "$STATE/agent.yaml" >"$STATE/agent.log" 2>&1 &
  AGENT=$!
  for _ in $(seq 100); do [ -S "$STATE/control.sock" ] && return 0; sleep 0.1; done
  log "agent did not start"; tail -20 "$STATE/agent.log" >&2; return 1
}

# One pre-dump + dump + restore cycle on a fresh counter of $1 units; prints one JSON object.
cycle() {
  local gib=$1 img="$STATE/img" pid applog t0 pre dump rest r
  rm -rf "$img" && mkdir -p "$img"
  pid=$(phos run --job counter -- "$ROOT/build/gpu/workloads/counter" --mib $((gib * UNIT_MIB)) --buffers $((gib < 4 ? gib * 2 : 8)) --steps 0 --step-ms 20) || { log "phos run failed"; return 1; }
  applog=$(phos ps --json | python3 -c 'import sys,json; d=json.loads(sys.stdin.read().splitlines()[-1]); print([p["logPath"] for p in d["processes"] if p["pid"]=='"$pid"'][0])')
  for _ in $(seq 900); do grep -q '^step 10 ' "$applog" 2>/dev/null && break; sleep 0.1; done
  grep -q '^step 10 ' "$applog" || { log "counter did not reach step 10"; tail -5 "$applog" >&2; return 1; }
  t0=$(now_ms)
  r=$(phos pre-dump --pid "$pid" --dir "$img/pre" --json) || { log "pre-dump failed: $(echo "$r" | tail -2)"; kill -9 "$pid"; return 1; }
  pre=$(( $(now_ms) - t0 )); local pre_end; pre_end=$(now_ms)
  echo "$r" | tail -1 >"$STATE/pre.json"
  # Two full images of 32 GiB or more would not fit in /dev/shm (half the RAM): keep only the dump's.
  [ "$gib" -ge 32 ] && rm -rf "$img/pre"
  sleep 1
  t0=$(now_ms)
  r=$(phos dump --pid "$pid" --dir "$img/full" --json) || { log "dump failed: $(echo "$r" | tail -2)"; kill -9 "$pid"; return 1; }
  dump=$(( $(now_ms) - t0 ))
  echo "$r" | tail -1 >"$STATE/dump.json"
  local before; before=$(grep -c '^step ' "$applog")
  local rs fills; rs=$(now_ms); fills=$(grep -c 'background fill \(complete\|failed\|stopped\)' "$STATE/agent.log")
  r=$(phos restore --dir "$img/full" --json) || { log "restore failed: $(echo "$r" | tail -2)"; return 1; }
  rest=$(( $(now_ms) - rs ))
  for _ in $(seq 600); do [ "$(grep -c '^step ' "$applog")" -ge $((before + 5)) ] && break; sleep 0.05; done
  # All memory resident: the restore is lazy, so wait for the agent's background fill to finish.
  for _ in $(seq 1200); do [ "$(grep -c 'background fill \(complete\|failed\|stopped\)' "$STATE/agent.log")" -gt "$fills" ] && break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
  python3 - "$applog" "$gib" "$pre" "$pre_end" "$dump" "$rest" "$rs" "$img" "$STATE" "$pid" <<'PY'
import json, os, sys
from datetime import datetime
applog, gib, pre, pre_end, dump, rest, rs, img, state, pid_s = sys.argv[1:]
fill = None  # epoch ms of the last background fill that ended after the restore began
for l in open(os.path.join(state, 'agent.log')):
    try: d = json.loads(l)
    except ValueError: continue
    t = datetime.fromisoformat(str(d.get('time', '1970-01-01T00:00:00Z')).replace('Z', '+00:00')).timestamp() * 1000
    if d.get('msg') == 'background fill complete' and t >= int(rs): fill = t
lines = open(applog).read().splitlines()
steps = [(int(l.split()[1]), float(l.split()[3])) for l in lines if l.startswith('step ')]
pre_end = int(pre_end); rs = int(rs); pre_start = pre_end - int(pre)
def gap(lo, hi):
    sel = [t for _, t in steps if lo - 1000 <= t <= hi + 1000]
    return max((b - a for a, b in zip(sel, sel[1:])), default=None)
after = [t for _, t in steps if t > rs]
size = lambda d: sum(os.path.getsize(os.path.join(p, f)) for p, _, fs in os.walk(d) for f in fs)
pj = json.load(open(os.path.join(state, 'pre.json'))); dj = json.load(open(os.path.join(state, 'dump.json')))
# The agent's steps for this pid (ms): where the pre-dump stall and the restore go.
agent_steps = {}
for l in open(os.path.join(state, 'agent.log')):
    try: d = json.loads(l)
    except ValueError: continue
    if d.get('msg') == 'step done' and d.get('pid') == int(pid_s): agent_steps[d['procedure'].split(' ')[0] + ':' + d['step']] = d['ms']
pick = lambda k: round(agent_steps[k], 1) if k in agent_steps else None
print(json.dumps({"gib": int(gib), "preDumpMs": int(pre), "preDumpStallMs": gap(pre_start, pre_end),
  "preDumpPath": pj.get("result", {}).get("path"), "dumpMs": int(dump), "dumpPath": dj.get("result", {}).get("path"),
  "safeReason": dj.get("result", {}).get("safeReason") or pj.get("result", {}).get("safeReason"), "agentStallMs": pj.get("result", {}).get("stallMs"),
  "imageBytes": size(os.path.join(img, "full")), "criuImageBytes": size(os.path.join(img, "full", "criu")),
  "restoreMs": int(rest), "restoreToRunningMs": (after[0] - rs) if after else None, "residentMs": (fill - rs) if fill else None,
  "preDumpCheckpointMs": pick("pre-dump:checkpoint"), "preDumpCriuMs": pick("pre-dump:criu-dump"), "preDumpResumeMs": pick("pre-dump:resume"),
  "restoreCriuMs": pick("restore:criu-restore"), "restoreDriverMs": pick("restore:driver-restore"),
  "stepsOk": not any(l.endswith(" BAD") for l in lines)}))
PY
  rm -rf "$img"
}

main() {
  build || exit 1
  start_agent || exit 1
  trap 'kill $AGENT 2>/dev/null; unstage' EXIT
  local rows=() r
  for gib in "${SIZES[@]}"; do
    local reps=$REPS; [ "$gib" -ge 16 ] && reps=$REPS_LARGE
    for rep in $(seq "$reps"); do
      log "counter $gib x ${UNIT_MIB} MiB, repetition $rep"
      r=$(cycle "$gib") && { echo "$r"; rows+=("$r"); } || tail -30 "$STATE/agent.log" >&2
    done
  done
  printf '%s\n' "${rows[@]}" | python3 -c '
import json, sys, statistics, platform, datetime, subprocess
rows = [json.loads(l) for l in sys.stdin if l.strip()]
by = {}
for r in rows: by.setdefault(r["gib"], []).append(r)
def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None
table = [{"gib": g, "reps": len(rs), **{k: med([r[k] for r in rs]) for k in rs[0] if k not in ("gib", "stepsOk", "preDumpPath", "dumpPath", "safeReason")},
          "path": rs[0]["dumpPath"], "allOk": all(r["stepsOk"] for r in rs)} for g, rs in sorted(by.items())]
try: gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except FileNotFoundError: gpu = "no nvidia-smi (simulated driver?)"
json.dump({"bench": "gpu-phos", "system": "phos (agent + libphos keeper path)", "stage": sys.argv[2], "machine": {"gpu": gpu, "kernel": platform.release()}, "date": datetime.date.today().isoformat(), "rows": table, "raw": rows}, open(sys.argv[1], "w"), indent=1)
f = lambda v: "-" if v is None else "%.0f" % v
print("| size | reps | path | pre-dump ms | pre-dump stall ms | dump ms | image GB | CRIU part GB | restore ms | restore-to-running ms | all resident ms | ok |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for t in table:
    print("| %d | %d | %s | %s | %s | %s | %.2f | %.2f | %s | %s | %s | %s |" % (t["gib"], t["reps"], t["path"], f(t["preDumpMs"]), f(t["preDumpStallMs"]), f(t["dumpMs"]), (t["imageBytes"] or 0)/1e9, (t["criuImageBytes"] or 0)/1e9, f(t["restoreMs"]), f(t["restoreToRunningMs"]), f(t.get("residentMs")), t["allOk"]))
' "$OUT/gpu-phos.json" "$STAGE_MODE"
  # The agent's log and the apps' (libphos logs there too), to read where a cycle's time went.
  mkdir -p "$OUT/phos-logs" && cp "$STATE/agent.log" "$OUT/phos-logs/" && cp "$STATE"/state/logs/*.log "$OUT/phos-logs/" 2>/dev/null
}
[ "${BASH_SOURCE[0]}" = "$0" ] && main
