#!/usr/bin/env python3
"""Turns test/gpu/libphos.sh's records (tab-separated, one fact per line) into libphos.json and a
summary table on stdout. Exit status 0 when every comparison matched and nothing failed, else 1.

Records (first field is the kind):
  wl      SPEC MODE RC CHECKSUM MS REFERENCE STATS      a workload run (MODE none|phos|armed)
  torch   ALLOC MODE CHECK VALUE                        a PyTorch check's result (VALUE hash, ERROR:..., skip:...)
  trun    ALLOC MODE RC STATS                           a PyTorch run's exit status and phos-stats line
  lb      MODE ROUND VARIANT NS                         launch-bench median ns/launch of one variant
  lbdelta MODE ROUND DISARMED ARMED                     launch-bench in-process deltas (ns/launch)
  step    MODE ROUND MEDIAN_MS                          PyTorch training-step median
  info    KEY VALUE
Usage: summarize.py RECORDS JSON_OUT
"""
import json
import statistics
import sys


def parse_stats(s):
    out = {}
    for tok in s.split():
        if "=" in tok:
            k, v = tok.split("=", 1)
            try:
                out[k] = int(v, 0)
            except ValueError:
                out[k] = v
    return out


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=1, unit=""):
    return "n/a" if x is None else ("%.*f%s" % (nd, x, unit))


def mib(b):
    return "n/a" if b is None else "%.1f MiB" % (b / 1048576.0)


def main():
    recs = []
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                recs.append(line.split("\t"))
    res = {"info": {}, "workloads": [], "torch": {}, "stats": {}, "launch": {}, "step": {}, "failures": []}
    fail = res["failures"]

    for r in recs:
        if r[0] == "info" and len(r) >= 3:
            res["info"][r[1]] = r[2]

    # ---- workloads
    specs = []
    wl = {}
    for r in recs:
        if r[0] != "wl":
            continue
        spec, mode, rc, cs, ms, ref = r[1], r[2], int(r[3]), r[4], float(r[5]), r[6]
        st = parse_stats(r[7]) if len(r) > 7 else {}
        if spec not in wl:
            specs.append(spec)
            wl[spec] = {"spec": spec, "reference": ref, "runs": {}}
        wl[spec]["runs"][mode] = {"rc": rc, "checksum": cs, "ms": ms, "stats": st}
        if st:
            res["stats"]["workload %s [%s]" % (spec, mode)] = st
    for spec in specs:
        w = wl[spec]
        sums = {m: v["checksum"] for m, v in w["runs"].items()}
        ok = all(v["rc"] == 0 for v in w["runs"].values()) and len(set(sums.values())) == 1 and \
            (w["reference"] in ("", "none") or w["reference"] in sums.values())
        w["match"] = ok
        if not ok:
            fail.append("workload %s: %s" % (spec, sums))
        res["workloads"].append(w)

    # ---- torch
    t = {}
    for r in recs:
        if r[0] == "torch":
            alloc, mode, check, val = r[1], r[2], r[3], r[4]
            t.setdefault(alloc, {}).setdefault(check, {})[mode] = val
        elif r[0] == "trun":
            alloc, mode, rc = r[1], r[2], int(r[3])
            st = parse_stats(r[4]) if len(r) > 4 else {}
            res["torch"].setdefault("_runs", {})["%s/%s" % (alloc, mode)] = {"rc": rc, "stats": st}
            if st:
                res["stats"]["torch %s [%s]" % (alloc, mode)] = st
            if rc != 0:
                fail.append("torch %s/%s exited %d" % (alloc, mode, rc))
    for alloc, checks in t.items():
        for check, modes in checks.items():
            vals = list(modes.values())
            skipped = all(v.startswith("skip") for v in vals)
            base = [v for m, v in modes.items() if m.startswith("none")]
            deterministic = len(set(base)) <= 1
            others = [v for m, v in modes.items() if not m.startswith("none")]
            match = (not skipped) and deterministic and all(v == base[0] for v in others) and \
                not any(v.startswith("ERROR") for v in vals) if base else False
            entry = {"values": modes, "match": match, "skipped": skipped, "baseline_deterministic": deterministic}
            res["torch"].setdefault(alloc, {})[check] = entry
            if not match and not skipped:
                fail.append("torch %s/%s: %s%s" % (alloc, check, modes,
                                                    "" if deterministic else " (baseline itself nondeterministic)"))

    # ---- launch cost
    lb = {}
    for r in recs:
        if r[0] == "lb":
            lb.setdefault(r[1], {}).setdefault(r[3], []).append(float(r[4]))
        elif r[0] == "lbdelta":
            d = res["launch"].setdefault("in_process_deltas", {}).setdefault(r[1], {"disarmed": [], "armed": []})
            d["disarmed"].append(float(r[3]))
            if r[4] not in ("", "none"):
                d["armed"].append(float(r[4]))
    L = res["launch"]
    L["per_process_medians"] = lb
    none_plt = med(lb.get("none", {}).get("plt", []))
    phos_plt = med(lb.get("phos", {}).get("plt", []))
    phos_armed = med(lb.get("phos", {}).get("armed", []))
    L["baseline_ns"] = none_plt
    L["cross_process_disarmed_ns"] = None if none_plt is None or phos_plt is None else phos_plt - none_plt
    L["cross_process_armed_ns"] = None if none_plt is None or phos_armed is None else phos_armed - none_plt
    d = L.get("in_process_deltas", {})
    L["disarmed_ns"] = med(d.get("phos", {}).get("disarmed", []))
    L["armed_ns"] = med(d.get("phos", {}).get("armed", []))
    L["targets_ns"] = {"disarmed": 100, "armed": 1000}
    # Without libphos "plt" and "real" are the same function: their difference is the method's noise floor.
    L["noise_floor_ns"] = med(d.get("none", {}).get("disarmed", []))
    if L["disarmed_ns"] is not None and L["disarmed_ns"] > 100:
        fail.append("disarmed launch cost %.1f ns > 100 ns" % L["disarmed_ns"])
    if L["armed_ns"] is not None and L["armed_ns"] > 1000:
        fail.append("armed launch cost %.1f ns > 1000 ns" % L["armed_ns"])

    # ---- step time
    st = {}
    for r in recs:
        if r[0] == "step":
            st.setdefault(r[1], []).append(float(r[3]))
    S = res["step"]
    S["per_process_medians_ms"] = st
    n, p = med(st.get("none", [])), med(st.get("phos", []))
    S["none_ms"], S["phos_ms"] = n, p
    S["overhead_pct"] = None if n is None or p is None else (p - n) / n * 100.0
    # Paired by round (none and phos of one round ran back to back): robust against drift between rounds.
    rounds = {}
    for r in recs:
        if r[0] == "step":
            rounds.setdefault(r[2], {})[r[1]] = float(r[3])
    pairs = [(v["phos"] - v["none"]) / v["none"] * 100.0 for v in rounds.values() if "phos" in v and "none" in v]
    S["paired_overhead_pct"] = med(pairs)
    S["paired_overhead_pct_by_round"] = pairs
    S["none_spread_pct"] = None if not st.get("none") or n is None else \
        (max(st["none"]) - min(st["none"])) / n * 100.0
    S["target_pct"] = 1.0
    # What the measured per-launch cost implies for a step: launches per step x added ns per launch.
    lps = res["info"].get("launches_per_step")
    S["launches_per_step"] = float(lps) if lps else None
    S["launch_bound_pct"] = None
    if S["launches_per_step"] is not None and L.get("disarmed_ns") is not None and n:
        S["launch_bound_pct"] = S["launches_per_step"] * max(L["disarmed_ns"], 0.0) / (n * 1e6) * 100.0
    # Verdict on the paired estimate (none and phos of a round ran back to back); the unpaired one and the
    # spread between baseline processes show how much of it is noise.
    if S["paired_overhead_pct"] is not None and S["paired_overhead_pct"] >= 1.0:
        fail.append("PyTorch step overhead %.2f%% >= 1%% (paired by round)" % S["paired_overhead_pct"])

    res["ok"] = not fail
    with open(sys.argv[2], "w") as f:
        json.dump(res, f, indent=2, sort_keys=True)

    # ---- table
    print("=" * 100)
    print("libphos on %s (driver %s)" % (res["info"].get("gpu", "?"), res["info"].get("driver", "?")))
    print("-" * 100)
    print("%-62s %-10s %s" % ("workload", "result", "checksum none / phos / armed"))
    for w in res["workloads"]:
        rr = w["runs"]
        print("%-62s %-10s %s / %s / %s" % (w["spec"][:62], "match" if w["match"] else "MISMATCH",
                                             rr.get("none", {}).get("checksum", "-"),
                                             rr.get("phos", {}).get("checksum", "-"),
                                             rr.get("armed", {}).get("checksum", "-")))
    print("-" * 100)
    print("%-30s %-10s %s" % ("pytorch check", "result", "values by run"))
    for alloc in sorted(k for k in res["torch"] if not k.startswith("_")):
        for check, e in res["torch"][alloc].items():
            verdict = "skipped" if e["skipped"] else ("match" if e["match"] else "MISMATCH")
            vals = " ".join("%s=%s" % (m, v) for m, v in e["values"].items())
            print("%-30s %-10s %s" % ("%s/%s" % (alloc, check), verdict, vals[:200]))
    print("-" * 100)
    print("libphos counters (exit-time phos-stats):")
    for name, s in res["stats"].items():
        print("  %-48s getproc=%s (wrapped %s) dlsym_wrapped=%s launches_tracked=%s widened=%s region_ok=%s "
              "served=%s in %s allocs (peak slabs %s) app_maps_in_region=%s passthrough=%s" % (
                  name[:48], s.get("proc_queries"), s.get("proc_wrapped"), s.get("dlsym_wrapped"),
                  s.get("launches_tracked"), s.get("launches_widened"), s.get("region_ok"),
                  mib(s.get("served_bytes")), s.get("served_allocs"), mib(s.get("slab_peak_bytes")),
                  mib(s.get("app_region_map_bytes")), mib(s.get("passthrough_bytes"))))
    print("-" * 100)
    print("launch cost (cuLaunchKernel submit, empty kernel): baseline %s ns/launch" % fmt(L["baseline_ns"]))
    print("  added, same process vs the driver's own function: disarmed %s ns (target <= 100), armed %s ns "
          "(target <= 1000)" % (fmt(L["disarmed_ns"]), fmt(L["armed_ns"])))
    print("  added, across processes (medians of runs): disarmed %s ns, armed %s ns; noise floor %s ns" % (
        fmt(L["cross_process_disarmed_ns"]), fmt(L["cross_process_armed_ns"]), fmt(L["noise_floor_ns"])))
    print("pytorch training step (median of per-process medians): none %s ms, libphos disarmed %s ms -> "
          "overhead %s unpaired, %s paired by round (the verdict; target < 1%%); spread of none runs %s" % (
              fmt(S["none_ms"], 3), fmt(S["phos_ms"], 3), fmt(S["overhead_pct"], 2, "%"),
              fmt(S["paired_overhead_pct"], 2, "%"), fmt(S["none_spread_pct"], 2, "%")))
    print("  launches per step %s x disarmed cost -> %s of a step" % (
        fmt(S["launches_per_step"], 1), fmt(S["launch_bound_pct"], 4, "%")))
    print("=" * 100)
    if fail:
        print("FAILURES:")
        for x in fail:
            print("  " + x)
    print("RESULT %s" % ("PASS" if not fail else "FAIL"))
    return 0 if not fail else 1


if __name__ == "__main__":
    sys.exit(main())
