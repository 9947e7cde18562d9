#!/usr/bin/env bash
# Live migration on the GPU machine: two hosts as network namespaces (a veth pair) sharing the one GPU,
# nats-server + coordinator + agent gpu-a in the first, agent gpu-b in the second (each agent sees its own
# /run/phos-mig, as on separate machines). Per size: `counter` under phos on gpu-a, `phos migrate` to
# gpu-b; downtime and total time as the coordinator measured them, and the largest gap between the app's
# own step stamps. In the same run the baseline: driver checkpoint (ckpt-ctl) + CRIU dump in host a, the
# image sent to host b over TCP, CRIU restore + driver restore there.
#   here:            bash bench/gpu/pack.sh
#   GPU machine:     bash bench/gpu/migrate.sh [GiB ...]   (device tool, carry .carry) -> $OUT/gpu-migrate.json
# A dry run on cudasim: PHOS_BENCH_UNIT_MIB=32 PHOS_BENCH_SIM=1 bash bench/gpu/migrate.sh 1
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/bench/results}
mkdir -p "$OUT"
read -r -a SIZES <<<"${*:-1 4 16}"
REPS=${PHOS_BENCH_REPS:-3}
UNIT_MIB=${PHOS_BENCH_UNIT_MIB:-1024}
CARRY="$ROOT/.carry/gpu"
STATE=/dev/shm/phos-mig
NSA=phos-mig-a NSB=phos-mig-b ADDR_A=10.201.0.1 ADDR_B=10.201.0.2
NATS=nats://$ADDR_A:4222
log() { echo "[migrate-bench $(date +%T)] $*" >&2; }
now_ms() { date +%s%3N; }

NODE=$(command -v node || true)
if [ -z "$NODE" ]; then NODE=/tmp/phos-node; [ -x $NODE ] || { xz -dc "$CARRY/node.xz" >$NODE && chmod +x $NODE; }; fi
export PHOS_PCCL_ADDON="$CARRY/pccl.node"
NATS_SERVER=$(command -v nats-server || echo "$CARRY/nats-server")
BUILD=build/gpu
SIM_ENV=()
if [ -n "${PHOS_BENCH_SIM:-}" ]; then BUILD=build/native; SIM_ENV=("LD_LIBRARY_PATH=$ROOT/build/native/cudasim"); fi
phos() { env "${SIM_ENV[@]}" PHOS_CONTROL_SOCK="$STATE/$1/control.sock" "$NODE" "$CARRY/bundle/phos.mjs" "${@:2}"; }
in_a() { ip netns exec $NSA "$@"; }
# Network namespace only (ip netns exec also gives each command a new mount namespace, and CRIU wants the
# app and itself in one): for the baseline's app, dump and restore.
net() { nsenter --net=/run/netns/$1 "${@:2}"; }

build() {
  [ -n "${PHOS_BENCH_SIM:-}" ] && return 0
  [ -x $BUILD/workloads/counter ] && [ -f $BUILD/hijack/libphos.so ] && [ -x $BUILD/tools/ckpt-ctl ] && return 0
  cmake -S native -B $BUILD -DCMAKE_BUILD_TYPE=Release >build/gpu-cmake.log 2>&1 || { tail -20 build/gpu-cmake.log; return 1; }
  cmake --build $BUILD -j"$(nproc)" >build/gpu-build.log 2>&1 || { grep -E 'error' build/gpu-build.log | head -20; return 1; }
}

hosts_up() {
  ip netns del $NSA 2>/dev/null; ip netns del $NSB 2>/dev/null
  ip netns add $NSA && ip netns add $NSB || return 1
  ip -n $NSA link add eth0 type veth peer name eth0 netns $NSB
  ip -n $NSA addr add $ADDR_A/24 dev eth0 && ip -n $NSB addr add $ADDR_B/24 dev eth0
  for ns in $NSA $NSB; do ip -n $ns link set eth0 up; ip -n $ns link set lo up; done
}

# Agent $1 (a|b) in namespace $2 with pid range $3.
start_agent() {
  local n=$1 ns=$2 d="$STATE/$1"
  mkdir -p "$d/run" /run/phos-mig
  cat >"$d/agent.yaml" <<YAML
socket: /run/phos-mig/agent.sock
controlSocket: $d/control.sock
stateDir: $d/state
node: gpu-$n
nats: $NATS
dataAddr: $([ "$n" = a ] && echo $ADDR_A || echo $ADDR_B)
pidRange: "$3"
libphos: $ROOT/$BUILD/hijack/libphos.so
criu: $CARRY/criu/criu-wrap
image:
  fsync: false
env:
  LD_LIBRARY_PATH: "${PHOS_BENCH_SIM:+$ROOT/build/native/cudasim}"
YAML
  [ -n "${PHOS_BENCH_SIM:-}" ] && echo "libcuda: $ROOT/build/native/cudasim/libcuda.so.1" >>"$d/agent.yaml"
  ip netns exec "$ns" sh -c "mount --bind '$d/run' /run/phos-mig && UV_THREADPOOL_SIZE=16 PHOS_LOG_LEVEL=info exec '$NODE' '$CARRY/bundle/agent.mjs' --config '$d/agent.yaml'" >"$d/agent.log" 2>&1 &
  for _ in $(seq 200); do grep -q 'joined the mesh' "$d/agent.log" 2>/dev/null && return 0; sleep 0.1; done
  log "agent $n did not join the mesh"; tail -20 "$d/agent.log" >&2; return 1
}

mesh_up() {
  rm -rf "$STATE" && mkdir -p "$STATE/nats"
  in_a "$NATS_SERVER" -js -a $ADDR_A -p 4222 -sd "$STATE/nats" >"$STATE/nats.log" 2>&1 &
  for _ in $(seq 100); do grep -q 'Server is ready' "$STATE/nats.log" && break; sleep 0.1; done
  in_a env PHOS_LOG_LEVEL=info "$NODE" "$CARRY/bundle/coordinator.mjs" --nats $NATS >"$STATE/coordinator.log" 2>&1 &
  for _ in $(seq 200); do grep -q 'coordinator started' "$STATE/coordinator.log" && break; sleep 0.1; done
  start_agent a $NSA 40000-42499 && start_agent b $NSB 42500-44999
}

teardown() {
  # Apps of this bench (restored ones are not our children): found by the agent socket in their environment.
  for p in /proc/[0-9]*; do grep -qz '^PHOS_AGENT_SOCK=/run/phos-mig/agent.sock$' "$p/environ" 2>/dev/null && kill -9 "${p#/proc/}" 2>/dev/null; done
  pkill -f "$CARRY/bundle/agent.mjs" 2>/dev/null; pkill -f "$CARRY/bundle/coordinator.mjs" 2>/dev/null
  pkill -f "$NATS_SERVER -js -a $ADDR_A" 2>/dev/null; sleep 0.5
  ip netns del $NSA 2>/dev/null; ip netns del $NSB 2>/dev/null
}

counter_args() { echo --mib $(($1 * UNIT_MIB)) --buffers $(($1 < 4 ? $1 * 2 : 8)) --steps 0 --step-ms 20; }

wait_steps() { for _ in $(seq 1200); do [ "$(grep -c '^step ' "$1" 2>/dev/null)" -ge "$2" ] && return 0; sleep 0.05; done; return 1; }

# Largest gap between the app's step stamps, and the time from $2 (ms) to its first step after it.
gaps() {
  python3 - "$1" "$2" <<'PY'
import sys
steps = [float(l.split()[3]) for l in open(sys.argv[1]) if l.startswith('step ')]
t0 = int(sys.argv[2]); after = [t for t in steps if t > t0]
print(max((b - a for a, b in zip(steps, steps[1:])), default=0), (after[0] - t0) if after else -1, int(any(l.rstrip().endswith('BAD') for l in open(sys.argv[1]))))
PY
}

# phos: counter of $1 units on gpu-a, migrated to gpu-b. One JSON object.
phos_cycle() {
  local gib=$1 pid applog out t0 r
  pid=$(phos a run --job counter -- "$ROOT/$BUILD/workloads/counter" $(counter_args "$gib")) || { log "phos run failed"; return 1; }
  applog=$(ls -t "$STATE"/a/state/logs/counter-"$pid"-*.log | head -1)
  wait_steps "$applog" 10 || { log "counter did not reach step 10"; return 1; }
  t0=$(now_ms)
  out=$(in_a env "${SIM_ENV[@]}" "$NODE" "$CARRY/bundle/phos.mjs" migrate --pid "$pid" --from gpu-a --to gpu-b --nats $NATS --json 2>"$STATE/migrate.err")
  local rc=$? total=$(( $(now_ms) - t0 )) before; before=$(grep -c '^step ' "$applog")
  wait_steps "$applog" $((before + 5))
  read -r gap first bad < <(gaps "$applog" "$t0")
  kill -9 "$pid" 2>/dev/null
  echo "$out" | tail -1 | python3 -c '
import json, sys
s = json.loads(sys.stdin.read()); gib, rc, total, gap, bad = sys.argv[1:]
print(json.dumps({"gib": int(gib), "phase": s["phase"], "ok": s["phase"] == "succeeded" and rc == "0" and bad == "0",
  "downtimeMs": s.get("downtimeMs"), "migrationMs": s["updatedAt"] - s["startedAt"], "cliMs": int(total),
  "appGapMs": float(gap), "bytesSent": s["bytesSent"], "error": s.get("error")}))' "$gib" "$rc" "$total" "$gap" "$bad"
}

# Baseline: the same counter in host a; driver checkpoint + CRIU dump there, the image over TCP to host
# b, CRIU restore + driver restore there. One JSON object.
base_cycle() {
  local gib=$1 d="$STATE/base" pid t0 t1 dump copy rest
  rm -rf "$d" && mkdir -p "$d/a" "$d/b"
  # The workload is the new session's leader (CRIU dumps a whole session); it writes its own pid first.
  # (nsenter directly, not through net(): a function runs in a subshell that would report the kill into app.log)
  nsenter --net=/run/netns/$NSA env "${SIM_ENV[@]}" setsid sh -c 'echo $$ >"$0"; exec "$@"' "$d/pid" "$ROOT/$BUILD/workloads/counter" $(counter_args "$gib") </dev/null >"$d/app.log" 2>&1 &
  for _ in $(seq 50); do [ -s "$d/pid" ] && break; sleep 0.05; done
  pid=$(cat "$d/pid")
  wait_steps "$d/app.log" 10 || { log "baseline counter did not reach step 10"; kill -9 "$pid"; return 1; }
  ip netns exec $NSB python3 -c '
import socket, sys, tarfile
s = socket.create_server((sys.argv[1], 7455)); c, _ = s.accept()
tarfile.open(fileobj=c.makefile("rb"), mode="r|").extractall(sys.argv[2])' $ADDR_B "$d/b" &
  local rx=$!; sleep 0.5  # listening before the clock starts: the baseline is not charged for it
  t0=$(now_ms)
  env "${SIM_ENV[@]}" $BUILD/tools/ckpt-ctl --timeout-ms 60000 suspend "$pid" >/dev/null || { log "suspend failed"; kill -9 "$pid"; return 1; }
  net $NSA env CRIU_FAULT=130 "$CARRY/criu/criu-wrap" dump -t "$pid" -D "$d/a" -o dump.log --timeout 600 || { log "criu dump failed"; kill -9 "$pid"; return 1; }
  for _ in $(seq 100); do [ -d /proc/"$pid" ] || break; sleep 0.05; done  # criu ended it; it must be gone before the restore
  dump=$(( $(now_ms) - t0 )); t1=$(now_ms)
  in_a python3 -c '
import socket, sys, tarfile
c = socket.create_connection((sys.argv[1], 7455)); f = c.makefile("wb")
t = tarfile.open(fileobj=f, mode="w|"); t.add(sys.argv[2], arcname="."); t.close(); f.close(); c.close()' $ADDR_B "$d/a"
  wait $rx; copy=$(( $(now_ms) - t1 )); t1=$(now_ms)
  net $NSB env CRIU_FAULT=130 "$CARRY/criu/criu-wrap" restore -D "$d/b" -o restore.log -d --timeout 600 || { log "criu restore failed"; return 1; }
  env "${SIM_ENV[@]}" $BUILD/tools/ckpt-ctl resume "$pid" >/dev/null || { log "resume failed"; kill -9 "$pid"; return 1; }
  rest=$(( $(now_ms) - t1 ))
  local before; before=$(grep -c '^step ' "$d/app.log"); wait_steps "$d/app.log" $((before + 5))
  read -r gap first bad < <(gaps "$d/app.log" "$t0")
  kill -9 "$pid" 2>/dev/null
  python3 -c 'import json,sys; g,d,c,r,gap,bad,img=sys.argv[1:]; print(json.dumps({"gib": int(g), "ok": bad == "0", "suspendDumpMs": int(d), "copyMs": int(c), "restoreMs": int(r), "downtimeMs": float(gap), "imageBytes": int(img)}))' \
    "$gib" "$dump" "$copy" "$rest" "$gap" "$bad" "$(du -sb "$d/a" | cut -f1)"
  rm -rf "$d"
}

main() {
  build || exit 1
  hosts_up || { log "cannot make network namespaces (root and iproute2 needed)"; exit 1; }
  trap teardown EXIT
  mesh_up || exit 1
  local rows=() r
  for gib in "${SIZES[@]}"; do
    local reps=$REPS; [ "$gib" -ge 16 ] && reps=1
    for rep in $(seq "$reps"); do
      log "counter $gib x $UNIT_MIB MiB, repetition $rep: phos migrate"
      r=$(phos_cycle "$gib") && { echo "$r"; rows+=("{\"system\":\"phos\",${r:1}"); } || tail -20 "$STATE/a/agent.log" >&2
      log "counter $gib x $UNIT_MIB MiB, repetition $rep: driver checkpoint + CRIU + copy + restore"
      r=$(base_cycle "$gib") && { echo "$r"; rows+=("{\"system\":\"baseline\",${r:1}"); }
    done
  done
  printf '%s\n' "${rows[@]}" | python3 -c '
import json, sys, statistics, platform, datetime, subprocess
rows = [json.loads(l) for l in sys.stdin if l.strip()]
med = lambda xs: statistics.median(xs) if xs else None
table = []
for g in sorted({r["gib"] for r in rows}):
    p = [r for r in rows if r["gib"] == g and r["system"] == "phos" and r["ok"]]
    b = [r for r in rows if r["gib"] == g and r["system"] == "baseline" and r["ok"]]
    table.append({"gib": g, "phosReps": len(p), "baselineReps": len(b),
      "phosDowntimeMs": med([r["downtimeMs"] for r in p]), "phosAppGapMs": med([r["appGapMs"] for r in p]), "phosTotalMs": med([r["migrationMs"] for r in p]),
      "baselineDowntimeMs": med([r["downtimeMs"] for r in b]), "baselineCopyMs": med([r["copyMs"] for r in b])})
try: gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except FileNotFoundError: gpu = "no nvidia-smi (simulated driver)"
json.dump({"bench": "gpu-migrate", "machine": {"gpu": gpu, "kernel": platform.release()}, "date": datetime.date.today().isoformat(), "unitMiB": int(sys.argv[2]), "rows": table, "raw": rows}, open(sys.argv[1], "w"), indent=1)
print(json.dumps(table, indent=1))' "$OUT/gpu-migrate.json" "$UNIT_MIB"
}
[ "${BASH_SOURCE[0]}" = "$0" ] && main
