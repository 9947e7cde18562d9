#!/usr/bin/env bash
# phos on a PyTorch training loop on the GPU machine (test/gpu/torch/train_loop.py): pre-dump while it
# trains, dump, restore, and the final parameter checksum against an uninterrupted run. Reports the
# path taken, the stall, the driver checkpoint time and the CRIU image size (what the driver still copies:
# the residue that did not come through an allocation call).
#   here: bash bench/gpu/pack.sh     GPU machine: bash bench/gpu/torch.sh   -> $OUT/gpu-torch.json
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/phos.sh"
# PHOS_TORCH_APP=train (default; -> gpu-torch.json) or llama: the Llama-2-13B-shaped decoder of
# test/gpu/torch/llama_decode.py, 26 GB of fp16 weights, generating tokens (-> gpu-llama.json).
APP=${PHOS_TORCH_APP:-train}
case $APP in
  train) TRAIN="$ROOT/test/gpu/torch/train_loop.py"; STEPS=${PHOS_TORCH_STEPS:-150}; export PHOS_TORCH_JSON=gpu-torch.json ;;
  llama) TRAIN="$ROOT/test/gpu/torch/llama_decode.py"; STEPS=${PHOS_TORCH_STEPS:-1000}; export PHOS_TORCH_JSON=gpu-llama.json ;;
  *) echo "PHOS_TORCH_APP must be train or llama" >&2; exit 2 ;;
esac

torch_cycle() {
  local ref pid applog img="$STATE/torch-img" pre dump rest rs ps0 ps1
  ref=$(python3 "$TRAIN" --steps "$STEPS" --step-ms 0 | awk '/^checksum/ {print $2}')
  log "reference checksum $ref"
  rm -rf "$img" && mkdir -p "$img"
  pid=$(phos run --job train -- python3 "$TRAIN" --steps "$STEPS" --step-ms 20) || { log "phos run failed"; return 1; }
  applog=$(phos ps --json | python3 -c 'import sys,json; d=json.loads(sys.stdin.read().splitlines()[-1]); print([p["logPath"] for p in d["processes"] if p["pid"]=='"$pid"'][0])')
  for _ in $(seq 1200); do grep -q '^step 30 ' "$applog" 2>/dev/null && break; sleep 0.1; done
  grep -q '^step 30 ' "$applog" || { log "training did not reach step 30"; tail -20 "$applog" >&2; return 1; }
  ps0=$(now_ms)
  pre=$(phos pre-dump --pid "$pid" --dir "$img/pre" --json | tail -1); echo "$pre" >&2
  ps1=$(now_ms)
  # Two images of a 26 GB model would not fit in /dev/shm (half the RAM) next to the baseline's: keep the dump's.
  [ "$APP" = llama ] && rm -rf "$img/pre"
  for _ in $(seq 600); do grep -q '^step 60 ' "$applog" && break; sleep 0.1; done
  dump=$(phos dump --pid "$pid" --dir "$img/full" --json | tail -1); echo "$dump" >&2
  rs=$(now_ms)
  rest=$(phos restore --dir "$img/full" --json | tail -1); echo "$rest" >&2
  for _ in $(seq 1200); do grep -q '^checksum' "$applog" && break; sleep 0.1; done
  python3 - "$applog" "$ref" "$rs" "$img" "$STATE/agent.log" "$pid" "$pre" "$dump" "$ps0" "$ps1" <<'PY'
import json, os, sys
from datetime import datetime
applog, ref, rs, img, agentlog, pid, pre, dump, ps0, ps1 = sys.argv[1:]
lines = open(applog).read().splitlines()
steps = [(int(l.split()[1]), float(l.split()[3])) for l in lines if l.startswith('step ')]
ck = [l.split()[1] for l in lines if l.startswith('checksum')]
after = [t for _, t in steps if t > int(rs)]
size = lambda d: sum(os.path.getsize(os.path.join(p, f)) for p, _, fs in os.walk(d) for f in fs)
def zero_page_bytes(d):
    """Bytes of CRIU's page images that are whole zero pages (what a hole would hold just as well)."""
    try: import numpy as np
    except ImportError: return None
    n = 0
    for f in os.listdir(d):
        if not (f.startswith("pages-") and f.endswith(".img")): continue
        with open(os.path.join(d, f), "rb") as fh:
            while True:
                b = fh.read(64 << 20)
                if not b: break
                a = np.frombuffer(b[: len(b) // 4096 * 4096], dtype=np.uint64).reshape(-1, 512)
                n += int((~a.any(axis=1)).sum()) * 4096
    return n
ckpt, residue, unexplained, fill = {}, [], [], None
for l in open(agentlog):
    try: d = json.loads(l)
    except ValueError: continue
    if d.get('msg') == 'step done' and d.get('pid') == int(pid): ckpt.setdefault(d['procedure'] + ':' + d['step'], round(d['ms']))
    if d.get('msg') == 'driver checkpoint copied into host memory' and d.get('pid') == int(pid): residue.append(d['rssAnonGrowthBytes'])
    if d.get('msg') == 'driver residue left to the driver checkpoint' and d.get('pid') == int(pid): unexplained.append(d['residueBytes'])
    t = datetime.fromisoformat(str(d.get('time', '1970-01-01T00:00:00Z')).replace('Z', '+00:00')).timestamp() * 1000
    if d.get('msg') == 'background fill complete' and t >= int(rs): fill = t
gaps = [b[1] - a[1] for a, b in zip(steps, steps[1:])]
# The pre-dump's stall as the app sees it: the largest gap between step stamps that overlaps the pre-dump
# command (from its start to its reply), one normal step included.
pre_gaps = [b[1] - a[1] for a, b in zip(steps, steps[1:]) if b[1] > int(ps0) and a[1] < int(ps1)]
res = lambda s: (json.loads(s).get('result') or {}) if s.strip().startswith('{') else {}
doc = {"bench": os.environ["PHOS_TORCH_JSON"][:-5], "date": datetime.now().strftime("%Y-%m-%d"), "stage": os.environ.get("STAGE_MODE"), "steps": len(steps), "checksum": ck[0] if ck else None, "reference": ref, "match": bool(ck) and ck[0] == ref,
  "preDump": res(pre), "dump": res(dump), "restoreToRunningMs": (after[0] - int(rs)) if after else None, "residentMs": (fill - int(rs)) if fill else None, "finite": 'finite NO' not in lines, "largestStepGapMs": max(gaps) if gaps else None, "preDumpStepGapMs": max(pre_gaps) if pre_gaps else None,
  "criuImageBytes": size(os.path.join(img, "full", "criu")), "criuZeroPageBytes": zero_page_bytes(os.path.join(img, "full", "criu")), "gpuImageBytes": size(os.path.join(img, "full", "gpu")), "agentSteps": ckpt,
  "driverCheckpointRssAnonGrowthBytes": residue, "deviceBytesUnexplainedByLibphos": unexplained}
json.dump(doc, open(os.environ.get("OUT", ".") + "/" + os.environ["PHOS_TORCH_JSON"], "w"), indent=1)
print(json.dumps(doc, indent=1))
PY
  # CRIU's own logs of the last run (-v3: each step with a timestamp), to see where its time goes.
  cp "$img/pre/criu/dump.log" "$OUT/torch-criu-predump.log" 2>/dev/null; cp "$img/full/criu/restore.log" "$OUT/torch-criu-restore.log" 2>/dev/null
  cp "$applog" "$OUT/torch-app.log" 2>/dev/null
  rm -rf "$img"
}

# The same training loop under the baseline: driver lock+checkpoint (ckpt-ctl), CRIU dump, CRIU
# restore, driver restore+unlock, then the checksum. Appends "baseline" to gpu-torch.json.
baseline_cycle() {
  local dir=/dev/shm/phos-torch-baseline app pid t s dump rest img ref
  ref=$(python3 -c 'import json,os; print(json.load(open(os.environ.get("OUT",".")+"/"+os.environ["PHOS_TORCH_JSON"]))["reference"])')
  rm -rf "$dir" && mkdir -p "$dir/img"; app="$dir/app.log"
  setsid python3 "$TRAIN" --steps "$STEPS" --step-ms 20 </dev/null >"$app" 2>&1 &
  pid=$!
  for _ in $(seq 1200); do grep -q '^step 30 ' "$app" && break; sleep 0.1; done
  t=$(now_ms); s=$(build/gpu/tools/ckpt-ctl --timeout-ms 60000 suspend $pid) || { log "baseline suspend failed: $s"; kill -9 $pid; return 1; }
  CRIU_FAULT=130 "$CARRY/criu/criu-wrap" dump -t $pid -D "$dir/img" -o dump.log --timeout 600 || { log "baseline criu dump failed"; grep Error "$dir/img/dump.log" | tail -3 >&2; return 1; }
  dump=$(( $(now_ms) - t )); wait $pid 2>/dev/null
  img=$(du -sb "$dir/img" | cut -f1)
  t=$(now_ms)
  CRIU_FAULT=130 "$CARRY/criu/criu-wrap" restore -D "$dir/img" -o restore.log -d --timeout 600 || { log "baseline criu restore failed"; grep Error "$dir/img/restore.log" | tail -3 >&2; return 1; }
  build/gpu/tools/ckpt-ctl resume $pid >/dev/null || { log "baseline resume failed"; return 1; }
  rest=$(( $(now_ms) - t ))
  for _ in $(seq 1200); do grep -q '^checksum' "$app" && break; sleep 0.1; done
  python3 - "$app" "$ref" "$dump" "$img" "$rest" "$s" <<'PY'
import json, os, sys
app, ref, dump, img, rest, s = sys.argv[1:]
lines = open(app).read().splitlines()
steps = [float(l.split()[3]) for l in lines if l.startswith('step ')]
ck = [l.split()[1] for l in lines if l.startswith('checksum')]
ctl = [json.loads(l) for l in s.splitlines() if l.strip()]
p = os.environ.get("OUT", ".") + "/" + os.environ["PHOS_TORCH_JSON"]
doc = json.load(open(p))
doc["baseline"] = {"suspendPlusDumpMs": int(dump), "driverCheckpointMs": ctl[1]["ms"] if len(ctl) > 1 else None, "imageBytes": int(img),
  "restoreMs": int(rest), "largestStepGapMs": max((b - a for a, b in zip(steps, steps[1:])), default=None), "checksum": ck[0] if ck else None, "match": bool(ck) and ck[0] == ref}
json.dump(doc, open(p, "w"), indent=1)
print(json.dumps(doc["baseline"], indent=1))
PY
  rm -rf "$dir"
}

# PHOS_TORCH_REPS=N runs both systems N times; the JSON then holds the median of every number across
# the runs (strings and lists from the first; match only when every run matched) and each run under "runs".
merge_runs() {
  python3 - "$OUT/$PHOS_TORCH_JSON" "$@" <<'PY'
import json, statistics, sys
out, files = sys.argv[1], sys.argv[2:]
docs = [json.load(open(f)) for f in files]
def med(vals):
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals): return statistics.median(vals)
    if all(isinstance(v, dict) for v in vals): return {k: med([v.get(k) for v in vals]) for k in vals[0]}
    return vals[0]
doc = med(docs)
doc["match"] = all(d.get("match") for d in docs)  # equal in every run, not just the first
if "baseline" in doc: doc["baseline"]["match"] = all(d.get("baseline", {}).get("match") for d in docs)
doc["reps"], doc["runs"] = len(docs), docs
json.dump(doc, open(out, "w"), indent=1)
PY
}

build || exit 1
start_agent || exit 1
trap 'kill $AGENT 2>/dev/null; unstage' EXIT
runs=()
for r in $(seq "${PHOS_TORCH_REPS:-1}"); do
  log "repetition $r"
  [ -n "${PHOS_TORCH_BASELINE_ONLY:-}" ] || torch_cycle
  baseline_cycle
  mv "$OUT/$PHOS_TORCH_JSON" "$OUT/$PHOS_TORCH_JSON.r$r" && runs+=("$OUT/$PHOS_TORCH_JSON.r$r")
done
merge_runs "${runs[@]}" && rm -f "${runs[@]}"
cp "$STATE/agent.log" "$OUT/torch-agent.log"
