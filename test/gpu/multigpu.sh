#!/usr/bin/env bash
# Issue #8 on a machine with two GPUs (nvidia-h200-x2): a node agent on the real driver; `counter` under
# phos (1) on both GPUs (--devices 2): pre-dump, dump, restore; (2) on GPU 0: dump, restore --gpu-map 0=1;
# (3) on GPU 0, and on both GPUs: migrate --to-gpu 1. Every run must end with the checksum of its CPU
# model (bit-exact); times (stall, restore, move downtime and copy) go to $OUT/gpu-multigpu.json, one JSON
# object per line. Exit 0 when every case passed.
#   GPU machine (after bash bench/gpu/pack.sh here):  bash test/gpu/multigpu.sh [MIB]
#   dry run on cudasim (2 simulated GPUs):             PHOS_MGPU_SIM=1 bash test/gpu/multigpu.sh 32
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../bench/gpu/lib.sh"
RESULTS=$OUT/gpu-multigpu.json
: >"$RESULTS"
MIB=${1:-4096}
STEPS=${PHOS_MGPU_STEPS:-400}
STATE=/dev/shm/phos-mgpu
FAILED=0
log() { echo "[multigpu $(date +%T)] $*" >&2; }
fail() { log "FAIL: $*"; FAILED=1; }

if [ -n "${PHOS_MGPU_SIM:-}" ]; then
  BUILD=$ROOT/build/native
  export PHOS_SIM_GPUS=2 LD_LIBRARY_PATH=$BUILD/cudasim${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  LIBCUDA="libcuda: $BUILD/cudasim/libcuda.so.1"
  CRIU=${PHOS_CRIU:-/usr/local/sbin/criu}
else
  BUILD=$ROOT/build/gpu
  LIBCUDA=""
  CRIU=$CARRY/criu/criu-wrap
fi
gpu_build "$BUILD" || { log "native build failed"; exit 1; }
COUNTER=$BUILD/workloads/counter
# The GPU machine runs the packed bundle (bench/gpu/pack.sh, made from this tree); a dry run the sources.
if [ -z "${PHOS_MGPU_SIM:-}" ] && [ -f "$CARRY/bundle/phos.mjs" ]; then
  phos() { PHOS_CONTROL_SOCK=$STATE/control.sock "$NODE" "$CARRY/bundle/phos.mjs" "$@"; }
  agent_cmd() { "$NODE" "$CARRY/bundle/agent.mjs" "$@"; }
else
  phos() { PHOS_CONTROL_SOCK=$STATE/control.sock "$ROOT/bin/phos" "$@"; }
  agent_cmd() { "$ROOT/bin/phos" agent "$@"; }
fi
json() { python3 -c 'import sys,json; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(eval(sys.argv[1], {"d": d, "json": json}))' "$1"; }

log "GPUs: $("$BUILD/tools/gpu-probe" | json '[x["uuid"] for x in d.get("devices", [])]')"
[ "$("$BUILD/tools/gpu-probe" | json 'len(d.get("devices", []))')" -ge 2 ] || { log "needs two GPUs"; exit 1; }

rm -rf "$STATE" && mkdir -p "$STATE"
cat >"$STATE/agent.yaml" <<YAML
socket: $STATE/agent.sock
controlSocket: $STATE/control.sock
stateDir: $STATE/state
node: gpu0
pidRange: "25000-29999"
libphos: $BUILD/hijack/libphos.so
criu: $CRIU
$LIBCUDA
image:
  fsync: false
env:
  LD_LIBRARY_PATH: "${LD_LIBRARY_PATH:-}"
YAML
UV_THREADPOOL_SIZE=16 PHOS_LOG_LEVEL=${PHOS_LOG_LEVEL:-info} agent_cmd --config "$STATE/agent.yaml" >"$STATE/agent.log" 2>&1 &
AGENT=$!
trap 'kill $AGENT 2>/dev/null; wait $AGENT 2>/dev/null' EXIT
for _ in $(seq 100); do [ -S "$STATE/control.sock" ] && break; sleep 0.1; done
[ -S "$STATE/control.sock" ] || { log "agent did not start"; tail -20 "$STATE/agent.log"; exit 1; }

# start ARGS...: runs counter under phos; prints "pid logpath" once it stepped 5 times.
start() {
  local pid logp
  pid=$(phos run --job counter -- "$COUNTER" --mib "$MIB" --steps "$STEPS" --step-ms 20 "$@") || return 1
  logp=$(phos ps --json | json "[p['logPath'] for p in d['processes'] if p['pid'] == $pid][0]")
  for _ in $(seq 600); do [ "$(grep -c '^step .* ok$' "$logp" 2>/dev/null)" -ge 5 ] && break; sleep 0.1; done
  echo "$pid $logp"
}
# finish NAME LOG ARGS...: waits for the checksum and compares it with the CPU model's.
finish() {
  local name=$1 logp=$2 want got
  shift 2
  want=$("$COUNTER" --mib "$MIB" --steps "$STEPS" "$@" --reference | sed -n 's/^checksum //p')
  for _ in $(seq 1200); do grep -q '^checksum \|BAD' "$logp" && break; sleep 0.1; done  # up to 2 min
  got=$(sed -n 's/^checksum //p' "$logp")
  if [ -n "$got" ] && [ "$got" = "$want" ] && ! grep -q BAD "$logp"; then log "$name: bit-exact ($got)"; else fail "$name: checksum '$got', model $want"; tail -5 "$logp" >&2; fi
}
record() { echo "{\"case\":\"$1\",\"mib\":$MIB,\"result\":$2}" >>"$RESULTS"; }

# (1) two GPUs: pre-dump, dump, restore
read -r pid logp < <(start --devices 2) || fail "run (1)"
r=$(phos pre-dump --json --pid "$pid" --dir "$STATE/pre") && record two-gpu-pre-dump "$(echo "$r" | json 'json.dumps(d["result"])' 2>/dev/null || echo null)" || fail "pre-dump (1): $r"
r=$(phos dump --json --pid "$pid" --dir "$STATE/img" --parent "$STATE/pre") && record two-gpu-dump "$(echo "$r" | json 'json.dumps(d["result"])')" || fail "dump (1): $r"
r=$(phos restore --json --dir "$STATE/img") && record two-gpu-restore "$(echo "$r" | json 'json.dumps(d["result"])')" || fail "restore (1): $r"
finish two-gpu "$logp" --devices 2

# (2) one GPU, restored on the other
read -r pid logp < <(start) || fail "run (2)"
phos dump --json --pid "$pid" --dir "$STATE/img2" >/dev/null || fail "dump (2)"
r=$(phos restore --json --dir "$STATE/img2" --gpu-map 0=1) && record gpu-map-restore "$(echo "$r" | json 'json.dumps(d["result"])')" || fail "restore --gpu-map (2): $r"
command -v nvidia-smi >/dev/null && log "compute apps: $(nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader | tr '\n' ';')"
finish gpu-map "$logp"

# (3) same-node moves, one GPU and two GPUs
for devs in 1 2; do
  read -r pid logp < <(start --devices $devs) || fail "run (3, $devs)"
  r=$(phos migrate --json --pid "$pid" --to-gpu 1) && record "move-gpu-devices-$devs" "$(echo "$r" | json 'json.dumps(d["result"])')" || fail "migrate --to-gpu (3, $devs): $r"
  command -v nvidia-smi >/dev/null && log "compute apps: $(nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader | tr '\n' ';')"
  finish "move-gpu-devices-$devs" "$logp" --devices $devs
done

log "results: $RESULTS"; cat "$RESULTS" >&2
[ $FAILED -eq 0 ] || { tail -30 "$STATE/agent.log" >&2; exit 1; }
