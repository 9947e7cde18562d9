#!/usr/bin/env bash
# Live migration on the GPU machine: two hosts as network namespaces (a veth pair) sharing the one GPU,
# nats-server + coordinator + agent gpu-a in the first, agent gpu-b in the second (each agent sees its own
# /run/phos-mig, as on separate machines). Per size: `counter` under phos on gpu-a, `phos migrate` to
# gpu-b; downtime and total time as the coordinator measured them, and the largest gap between the app's
# own step stamps. In the same run the baseline: driver checkpoint (ckpt-ctl) + CRIU dump in host a, the
# image sent to host b over TCP, CRIU restore + driver restore there.
#   here:            bash bench/gpu/pack.sh
#   GPU machine:     bash bench/gpu/migrate.sh [GiB ... | train]   (device tool, carry .carry) -> $OUT/gpu-migrate.json
# (`train`: the PyTorch training loop of test/gpu/torch, its checksum checked against a run without phos)
# A dry run on cudasim: PHOS_BENCH_UNIT_MIB=32 PHOS_BENCH_SIM=1 bash bench/gpu/migrate.sh 1
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
read -r -a SIZES <<<"${*:-1 4 16}"
REPS=${PHOS_BENCH_REPS:-3}
UNIT_MIB=${PHOS_BENCH_UNIT_MIB:-1024}
STATE=/dev/shm/phos-mig
NSA=phos-mig-a NSB=phos-mig-b ADDR_A=10.201.0.1 ADDR_B=10.201.0.2
NATS=nats://$ADDR_A:4222
log() { echo "[migrate-bench $(date +%T)] $*" >&2; }

NATS_SERVER=$(command -v nats-server || echo "$CARRY/nats-server")
BUILD=build/gpu
SIM_ENV=()
if [ -n "${PHOS_BENCH_SIM:-}" ]; then BUILD=build/native; SIM_ENV=("LD_LIBRARY_PATH=$ROOT/build/native/cudasim"); fi
phos() { env "${SIM_ENV[@]}" PHOS_CONTROL_SOCK="$STATE/$1/control.sock" "$NODE" "$CARRY/bundle/phos.mjs" "${@:2}"; }
command -v ip >/dev/null || PATH="$CARRY/ip/bin:$PATH"  # the GPU machine has no iproute2: pack.sh carries it
# Commands in a host's network namespace (nsenter, not `ip netns exec`: that also gives each command a new
# mount namespace, and CRIU wants the app and itself in one; the agents get theirs from unshare).
net() { nsenter --net=/run/netns/$1 "${@:2}"; }
in_a() { net $NSA "$@"; }

build() { gpu_build $BUILD; }  # on cudasim: build/native, made by the install

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
  mkdir -p "$d/run" "$d/state" /run/phos-mig
  # The agent's state folder (where a migration's CRIU image is written and received) on a huge-page
  # tmpfs, as phos.sh stages pre-dumps: CRIU writes pages faster there (bench/gpu/criu-speed.sh).
  # PHOS_BENCH_STAGE=none keeps it on /dev/shm.
  if [ "${PHOS_BENCH_STAGE:-huge}" = huge ]; then
    mount -t tmpfs -o huge=always,mode=0700 "phos-mig-$n" "$d/state" 2>/dev/null || log "no huge-page state folder for agent $n (mount failed)"
  fi
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
  net "$ns" unshare -m --propagation private sh -c "mount --bind '$d/run' /run/phos-mig && UV_THREADPOOL_SIZE=16 PHOS_LOG_LEVEL=${PHOS_LOG_LEVEL:-info} exec '$NODE' '$CARRY/bundle/agent.mjs' --config '$d/agent.yaml'" >"$d/agent.log" 2>&1 &
  for _ in $(seq 200); do grep -q 'joined the mesh' "$d/agent.log" 2>/dev/null && return 0; sleep 0.1; done
  log "agent $n did not join the mesh"; tail -20 "$d/agent.log" >&2; return 1
}

mesh_up() {
  for n in a b; do mountpoint -q "$STATE/$n/state" 2>/dev/null && umount "$STATE/$n/state"; done
  rm -rf "$STATE" && mkdir -p "$STATE/nats"
  in_a "$NATS_SERVER" -js -a $ADDR_A -p 4222 -sd "$STATE/nats" >"$STATE/nats.log" 2>&1 &
  for _ in $(seq 100); do grep -q 'Server is ready' "$STATE/nats.log" && break; sleep 0.1; done
  in_a env PHOS_LOG_LEVEL=info "$NODE" "$CARRY/bundle/coordinator.mjs" --nats $NATS >"$STATE/coordinator.log" 2>&1 &
  for _ in $(seq 200); do grep -q 'coordinator started' "$STATE/coordinator.log" && break; sleep 0.1; done
  # Pid ranges high above the tests' (21000-29999); a machine with the default pid_max of 32768 gets lower ones.
  local base=40000; [ "$(cat /proc/sys/kernel/pid_max)" -gt 45000 ] || base=12000
  start_agent a $NSA $base-$((base + 2499)) && start_agent b $NSB $((base + 2500))-$((base + 4999))
}

teardown() {
  # Apps of this bench (restored ones are not our children): found by the agent socket in their environment.
  for p in /proc/[0-9]*; do grep -qz '^PHOS_AGENT_SOCK=/run/phos-mig/agent.sock$' "$p/environ" 2>/dev/null && kill -9 "${p#/proc/}" 2>/dev/null; done
  pkill -f "$CARRY/bundle/agent.mjs" 2>/dev/null; pkill -f "$CARRY/bundle/coordinator.mjs" 2>/dev/null
  pkill -f "$NATS_SERVER -js -a $ADDR_A" 2>/dev/null; sleep 0.5
  ip netns del $NSA 2>/dev/null; ip netns del $NSB 2>/dev/null
  for n in a b; do mountpoint -q "$STATE/$n/state" 2>/dev/null && umount "$STATE/$n/state"; done
  return 0
}

# PHOS_BENCH_COUNTER_ARGS adds counter options (e.g. --hot-kib 262144: a 256 MiB host model, a bigger CPU image).
counter_args() { echo --mib $(($1 * UNIT_MIB)) --buffers $(($1 < 4 ? $1 * 2 : 8)) --steps 0 --step-ms 20 ${PHOS_BENCH_COUNTER_ARGS:-}; }
# A row's workload: `counter` with $2 units of GPU memory (runs until killed), or `train`, the PyTorch
# training loop (AdamW) of test/gpu/torch, which ends with a checksum over its parameters.
TRAIN="$ROOT/test/gpu/torch/train_loop.py"
TRAIN_STEPS=${PHOS_BENCH_TRAIN_STEPS:-300}
TRAIN_REF=""
app_cmd() {
  if [ "$1" = train ]; then echo python3 "$TRAIN" --steps "$TRAIN_STEPS" --step-ms 20
  else echo "$ROOT/$BUILD/workloads/counter" $(counter_args "$2"); fi
}
# The training loop's checksum without phos and without a migration: what every migrated run must end with.
train_reference() {
  TRAIN_REF=$(python3 "$TRAIN" --steps "$TRAIN_STEPS" --step-ms 0 2>"$STATE/train-ref.err" | awk '/^checksum/ {print $2}')
  [ -n "$TRAIN_REF" ] || { log "the training loop does not run here"; tail -5 "$STATE/train-ref.err" >&2; return 1; }
  log "training loop reference checksum $TRAIN_REF"
}
# After a cycle: counter runs on (5 more steps); the training loop runs to its checksum.
wait_after() {
  if [ "$1" = train ]; then for _ in $(seq 1200); do grep -q '^checksum' "$2" && return 0; sleep 0.1; done; return 1; fi
  local before; before=$(grep -c '^step ' "$2"); wait_steps "$2" $((before + 5))
}

wait_steps() { for _ in $(seq 1200); do [ "$(grep -c '^step ' "$1" 2>/dev/null)" -ge "$2" ] && return 0; sleep 0.05; done; return 1; }

# Largest gap between the app's step stamps, the time from $2 (ms) to its first step after it, and 1 when
# the run went wrong: a BAD step (counter), or a checksum other than $3 (training loop; $3 set).
gaps() {
  python3 - "$1" "$2" "${3:-}" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
steps = [float(l.split()[3]) for l in lines if l.startswith('step ')]
t0 = int(sys.argv[2]); after = [t for t in steps if t > t0]
ck = [l.split()[1] for l in lines if l.startswith('checksum')]
bad = any(l.rstrip().endswith('BAD') for l in lines) or (sys.argv[3] != '' and ck[:1] != [sys.argv[3]])
print(max((b - a for a, b in zip(steps, steps[1:])), default=0), (after[0] - t0) if after else -1, int(bad))
PY
}

# phos: workload $1 (counter of $2 units, or train) on gpu-a, migrated to gpu-b. One JSON object.
phos_cycle() {
  local app=$1 gib=$2 pid applog out t0 r ref=""
  [ "$app" = train ] && ref=$TRAIN_REF
  pid=$(phos a run --job "$app" -- $(app_cmd "$app" "$gib")) || { log "phos run failed"; return 1; }
  applog=$(ls -t "$STATE"/a/state/logs/"$app"-"$pid"-*.log | head -1)
  wait_steps "$applog" 30 || { log "$app did not reach step 30"; tail -5 "$applog" >&2; return 1; }
  t0=$(now_ms)
  out=$(in_a env "${SIM_ENV[@]}" "$NODE" "$CARRY/bundle/phos.mjs" migrate --pid "$pid" --from gpu-a --to gpu-b --nats $NATS --json ${PHOS_BENCH_MIGRATE_ARGS:-} 2>"$STATE/migrate.err")
  local rc=$? total=$(( $(now_ms) - t0 ))
  wait_after "$app" "$applog"
  read -r gap first bad < <(gaps "$applog" "$t0" "$ref")
  kill -9 "$pid" 2>/dev/null
  # A run that went wrong keeps its evidence: the app's log and both agents' logs so far.
  [ "$bad" = 1 ] && { cp "$applog" "$OUT/bad-$app-$pid.log"; cp "$STATE/a/agent.log" "$OUT/bad-$app-$pid-agent-a.log"; cp "$STATE/b/agent.log" "$OUT/bad-$app-$pid-agent-b.log"; }
  [ "$rc" = 0 ] || { log "phos migrate exited $rc"; tail -5 "$STATE/migrate.err" >&2; }
  echo "$out" | tail -1 | python3 -c '
import json, sys
s = json.loads(sys.stdin.read()); app, gib, rc, total, gap, bad = sys.argv[1:]
print(json.dumps({"workload": app, "gib": int(gib), "phase": s["phase"], "ok": s["phase"] == "succeeded" and rc == "0" and bad == "0",
  "downtimeMs": s.get("downtimeMs"), "migrationMs": s["updatedAt"] - s["startedAt"], "cliMs": int(total),
  "appGapMs": float(gap), "bytesSent": s["bytesSent"], "error": s.get("error")}))' "$app" "$gib" "$rc" "$total" "$gap" "$bad"
}

# Baseline: the same workload in host a; driver checkpoint + CRIU dump there, the image over TCP to host
# b, CRIU restore + driver restore there. One JSON object.
base_cycle() {
  local app=$1 gib=$2 d="$STATE/base" pid t0 t1 dump copy rest ref=""
  [ "$app" = train ] && ref=$TRAIN_REF
  rm -rf "$d" && mkdir -p "$d/a" "$d/b"
  # The workload is the new session's leader (CRIU dumps a whole session); it writes its own pid first.
  # (nsenter directly, not through net(): a function runs in a subshell that would report the kill into app.log)
  nsenter --net=/run/netns/$NSA env "${SIM_ENV[@]}" setsid sh -c 'echo $$ >"$0"; exec "$@"' "$d/pid" $(app_cmd "$app" "$gib") </dev/null >"$d/app.log" 2>&1 &
  for _ in $(seq 50); do [ -s "$d/pid" ] && break; sleep 0.05; done
  pid=$(cat "$d/pid")
  wait_steps "$d/app.log" 30 || { log "baseline $app did not reach step 30"; kill -9 "$pid"; return 1; }
  net $NSB python3 -c '
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
  wait_after "$app" "$d/app.log"
  read -r gap first bad < <(gaps "$d/app.log" "$t0" "$ref")
  kill -9 "$pid" 2>/dev/null
  python3 -c 'import json,sys; a,g,d,c,r,gap,bad,img=sys.argv[1:]; print(json.dumps({"workload": a, "gib": int(g), "ok": bad == "0", "suspendDumpMs": int(d), "copyMs": int(c), "restoreMs": int(r), "downtimeMs": float(gap), "imageBytes": int(img)}))' \
    "$app" "$gib" "$dump" "$copy" "$rest" "$gap" "$bad" "$(du -sb "$d/a" | cut -f1)"
  rm -rf "$d"
}

main() {
  build || exit 1
  hosts_up || { log "cannot make network namespaces (root and iproute2 needed)"; exit 1; }
  trap teardown EXIT
  mesh_up || exit 1
  local rows=() r
  for w in "${SIZES[@]}"; do [ "$w" = train ] && { train_reference || exit 1; }; done
  for w in "${SIZES[@]}"; do
    local app=counter gib=$w reps=$REPS what
    [ "$w" = train ] && { app=train; gib=0; }
    # The baseline moves the whole image (about a minute at 16 GiB): from 16 GiB up it runs once, phos $REPS times.
    local base_reps=$reps
    [ "$gib" -ge 16 ] && base_reps=1
    [ "${PHOS_BENCH_BASELINE:-1}" = 0 ] && base_reps=0
    what="counter $gib x $UNIT_MIB MiB"; [ "$app" = train ] && what="training loop"
    for rep in $(seq "$reps"); do
      log "$what, repetition $rep: phos migrate"
      r=$(phos_cycle "$app" "$gib") && { echo "$r"; rows+=("{\"system\":\"phos\",${r:1}"); } || tail -20 "$STATE/a/agent.log" >&2
      [ "$rep" -le "$base_reps" ] || continue
      log "$what, repetition $rep: driver checkpoint + CRIU + copy + restore"
      r=$(base_cycle "$app" "$gib") && { echo "$r"; rows+=("{\"system\":\"baseline\",${r:1}"); }
    done
  done
  printf '%s\n' "${rows[@]}" | python3 -c '
import json, sys, statistics, platform, datetime, subprocess
rows = [json.loads(l) for l in sys.stdin if l.strip()]
med = lambda xs: statistics.median(xs) if xs else None
table = []
for w, g in sorted({(r["workload"], r["gib"]) for r in rows}):
    p = [r for r in rows if (r["workload"], r["gib"]) == (w, g) and r["system"] == "phos" and r["ok"]]
    b = [r for r in rows if (r["workload"], r["gib"]) == (w, g) and r["system"] == "baseline" and r["ok"]]
    table.append({"workload": w, "gib": g, "phosReps": len(p), "baselineReps": len(b),
      "phosDowntimeMs": med([r["downtimeMs"] for r in p]), "phosAppGapMs": med([r["appGapMs"] for r in p]), "phosTotalMs": med([r["migrationMs"] for r in p]),
      "baselineDowntimeMs": med([r["downtimeMs"] for r in b]), "baselineCopyMs": med([r["copyMs"] for r in b])})
try: gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except FileNotFoundError: gpu = "no nvidia-smi (simulated driver)"
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or None
json.dump({"bench": "gpu-migrate", "machine": {"gpu": gpu, "kernel": platform.release()}, "date": datetime.date.today().isoformat(), "commit": commit, "unitMiB": int(sys.argv[2]), "rows": table, "raw": rows}, open(sys.argv[1], "w"), indent=1)
print(json.dumps(table, indent=1))' "$OUT/gpu-migrate.json" "$UNIT_MIB"
  # Where each phos migration's downtime went (source and target agent steps).
  python3 "$ROOT/bench/gpu/migrate_steps.py" "$STATE/a/agent.log" "$STATE/b/agent.log" "$STATE/coordinator.log" >"$OUT/gpu-migrate-steps.json" || true
}
[ "${BASH_SOURCE[0]}" = "$0" ] && main
