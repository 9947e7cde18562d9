"""Where a PyTorch training process's host memory is (the CRIU image's other half): RssAnon, the largest
anonymous mappings from smaps, and what glibc's malloc_trim(0) gives back and how long it takes.
GPU machine: python3 bench/gpu/heap_probe.py   -> one JSON line"""
import ctypes, json, os, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../test/gpu/torch"))
import phos_torch as pt  # noqa: E402


def rss_anon():
    for l in open("/proc/self/status"):
        if l.startswith("RssAnon:"):
            return int(l.split()[1]) * 1024


def top_anon(n=15):
    out, cur = [], None
    for l in open("/proc/self/smaps"):
        f = l.split()
        if len(f) >= 5 and "-" in f[0] and not f[0].endswith(":"):
            cur = {"range": f[0], "name": f[5] if len(f) > 5 else "", "perms": f[1]}
            out.append(cur)
        elif f and f[0] == "Anonymous:" and cur is not None:
            cur["anon"] = int(f[1]) * 1024
    out = [m for m in out if m.get("anon")]
    total = sum(m["anon"] for m in out)
    by_name = {}
    for m in out:
        by_name[m["name"] or "[anon]"] = by_name.get(m["name"] or "[anon]", 0) + m["anon"]
    return total, sorted(out, key=lambda m: -m["anon"])[:n], sorted(by_name.items(), key=lambda kv: -kv[1])[:n]


pt.setup_determinism()
model, _opt, step = pt.make_training()
for i in range(1, 31):
    step(i).item()
pt.sync()
before = rss_anon()
total, top, by_name = top_anon()
libc = ctypes.CDLL("libc.so.6")
t0 = time.perf_counter()
libc.malloc_trim(0)
trim_ms = (time.perf_counter() - t0) * 1000
after = rss_anon()
t0 = time.perf_counter()
libc.malloc_trim(0)
trim2_ms = (time.perf_counter() - t0) * 1000
print(json.dumps({"rssAnonBytes": before, "anonInSmaps": total, "afterTrimBytes": after, "trimMs": round(trim_ms, 2),
                  "secondTrimMs": round(trim2_ms, 2), "byName": by_name, "top": top}))
