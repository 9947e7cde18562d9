"""Where a migration's downtime goes: reads the two agents' pino logs (source, target) of a
bench/gpu/migrate.sh run and prints, per migration, the source's cutover steps (freeze, driver
checkpoint, CRIU dump, ship, seal), the hand-over to the target, and the target's restore steps, in ms.
With the coordinator's log too, the hand-over is split at the coordinator recording `restoring`: the
source's reply (after its dumped process is gone) and that record, then the target's prelude.
  python3 bench/gpu/migrate_steps.py SOURCE_AGENT_LOG TARGET_AGENT_LOG [COORDINATOR_LOG] > gpu-migrate-steps.json"""
import json
import sys
from datetime import datetime


def events(path):
    for line in open(path):
        try:
            d = json.loads(line)
        except ValueError:
            continue
        d["t"] = datetime.fromisoformat(d["time"].replace("Z", "+00:00")).timestamp() * 1000
        yield d


def main(src, dst, coord=None):
    out, cur = [], None
    logs = list(events(src)) + list(events(dst)) + (list(events(coord)) if coord else [])
    for d in sorted(logs, key=lambda d: d["t"]):
        msg = d.get("msg")
        if msg == "pre-copy done":
            cur = {"pid": d.get("pid"), "bytesSent": d.get("bytesSent"), "steps": {}, "t0": d["t"]}
            out.append(cur)
        elif cur is None:
            continue
        elif msg == "step done" and d.get("procedure", "").startswith(("dump", "restore")):
            side = "source" if d["procedure"].startswith("dump") else "target"
            cur["steps"]["%s:%s" % (side, d["step"])] = round(d["ms"], 1)
            if d["step"] == "seal":
                cur["sealedAt"] = d["t"]
        elif msg == "migration transition" and d.get("to") == "restoring" and "sealedAt" in cur:
            cur["steps"]["hand-over: source reply + coordinator record"] = round(d["t"] - cur["sealedAt"], 1)
            cur["recordedAt"] = d["t"]
        elif msg == "process adopted" and "sealedAt" in cur:
            if "recordedAt" in cur:
                cur["steps"]["hand-over: target prelude"] = round(d["t"] - cur["recordedAt"], 1)
            cur["steps"]["hand-over (seal to target pid claim)"] = round(d["t"] - cur["sealedAt"], 1)
        elif msg == "migrated process runs here":
            cur["steps"]["end-to-end (pre-copy done to runs on target)"] = round(d["t"] - cur["t0"], 1)
            cur = None
    for m in out:
        m.pop("t0", None)
        m.pop("sealedAt", None)
        m.pop("recordedAt", None)
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main(*sys.argv[1:4])
