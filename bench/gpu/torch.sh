#!/usr/bin/env bash
# phos on a PyTorch training loop on the GPU machine (test/gpu/torch/train_loop.py): pre-dump while it
# trains, dump, restore, and the final parameter checksum against an uninterrupted run. Reports the
# path taken, the stall, the driver checkpoint time and the CRIU image size (what the driver still copies:
# the residue that did not come through an allocation call).
#   here: bash bench/gpu/pack.sh     GPU machine: bash bench/gpu/torch.sh   -> $OUT/gpu-torch.json
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/phos.sh"
STEPS=${PHOS_TORCH_STEPS:-150}
TRAIN="$ROOT/test/gpu/torch/train_loop.py"

torch_cycle() {
  local ref pid applog img="$STATE/torch-img" pre dump rest rs
  ref=$(python3 "$TRAIN" --steps "$STEPS" --step-ms 0 | awk '/^checksum/ {print $2}')
  log "reference checksum $ref"
  rm -rf "$img" && mkdir -p "$img"
  pid=$(phos run --job train -- python3 "$TRAIN" --steps "$STEPS" --step-ms 20) || { log "phos run failed"; return 1; }
  applog=$(phos ps --json | python3 -c 'import sys,json; d=json.loads(sys.stdin.read().splitlines()[-1]); print([p["logPath"] for p in d["processes"] if p["pid"]=='"$pid"'][0])')
  for _ in $(seq 1200); do grep -q '^step 30 ' "$applog" 2>/dev/null && break; sleep 0.1; done
  grep -q '^step 30 ' "$applog" || { log "training did not reach step 30"; tail -20 "$applog" >&2; return 1; }
  pre=$(phos pre-dump --pid "$pid" --dir "$img/pre" --json | tail -1); echo "$pre" >&2
  for _ in $(seq 600); do grep -q '^step 60 ' "$applog" && break; sleep 0.1; done
  dump=$(phos dump --pid "$pid" --dir "$img/full" --json | tail -1); echo "$dump" >&2
  rs=$(now_ms)
  rest=$(phos restore --dir "$img/full" --json | tail -1); echo "$rest" >&2
  for _ in $(seq 1200); do grep -q '^checksum' "$applog" && break; sleep 0.1; done
  python3 - "$applog" "$ref" "$rs" "$img" "$STATE/agent.log" "$pid" "$pre" "$dump" <<'PY'
import json, os, sys
applog, ref, rs, img, agentlog, pid, pre, dump = sys.argv[1:]
lines = open(applog).read().splitlines()
steps = [(int(l.split()[1]), float(l.split()[3])) for l in lines if l.startswith('step ')]
ck = [l.split()[1] for l in lines if l.startswith('checksum')]
after = [t for _, t in steps if t > int(rs)]
size = lambda d: sum(os.path.getsize(os.path.join(p, f)) for p, _, fs in os.walk(d) for f in fs)
ckpt = {}
for l in open(agentlog):
    try: d = json.loads(l)
    except ValueError: continue
    if d.get('msg') == 'step done' and d.get('pid') == int(pid): ckpt.setdefault(d['procedure'] + ':' + d['step'], round(d['ms']))
gaps = [b[1] - a[1] for a, b in zip(steps, steps[1:])]
res = lambda s: (json.loads(s).get('result') or {}) if s.strip().startswith('{') else {}
doc = {"bench": "gpu-torch", "steps": len(steps), "checksum": ck[0] if ck else None, "reference": ref, "match": bool(ck) and ck[0] == ref,
  "preDump": res(pre), "dump": res(dump), "restoreToRunningMs": (after[0] - int(rs)) if after else None, "largestStepGapMs": max(gaps) if gaps else None,
  "criuImageBytes": size(os.path.join(img, "full", "criu")), "gpuImageBytes": size(os.path.join(img, "full", "gpu")), "agentSteps": ckpt}
json.dump(doc, open(os.environ.get("OUT", ".") + "/gpu-torch.json", "w"), indent=1)
print(json.dumps(doc, indent=1))
PY
}

build || exit 1
start_agent || exit 1
trap 'kill $AGENT 2>/dev/null' EXIT
torch_cycle
