"""What the driver's checkpoint copies for a context, and how much of it the context's limits decide.

One target process per configuration: it makes a CUDA context (bare through the driver API, or PyTorch
after a few AdamW steps), optionally lowers the context's limits (per-thread stack, device malloc heap,
printf FIFO), then waits. The parent locks and checkpoints it with the repo's ckpt-ctl, reads the growth
of its RssAnon (the host copy the driver made), restores and unlocks it, and the target checks its data.
  python3 bench/gpu/residue_probe.py CKPT_CTL  -> one JSON line per configuration on stdout
"""
import ctypes, json, os, subprocess, sys, time

LIMITS = {"stack": 0, "printf_fifo": 1, "malloc_heap": 2}


def cu():
    lib = ctypes.CDLL("libcuda.so.1")
    return lib


def mem_used(lib):
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    assert lib.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)) == 0
    return total.value - free.value


def get_limits(lib):
    out = {}
    for k, v in LIMITS.items():
        x = ctypes.c_size_t()
        rc = lib.cuCtxGetLimit(ctypes.byref(x), v)
        out[k] = x.value if rc == 0 else f"err{rc}"
    return out


def target(kind, shrink):
    """Child: make the context, shrink, report, wait for 'go' on stdin, check, report."""
    lib = cu()
    if kind == "torch":
        import torch
        m = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.GELU(), torch.nn.Linear(4096, 1024)).cuda()
        opt = torch.optim.AdamW(m.parameters())
        x = torch.randn(64, 1024, device="cuda")
        for _ in range(5):
            loss = m(x).square().mean(); loss.backward(); opt.step(); opt.zero_grad()
        torch.cuda.synchronize()
        ref = float(m(x).sum())
    else:
        assert lib.cuInit(0) == 0
        dev, ctx = ctypes.c_int(), ctypes.c_void_p()
        assert lib.cuDeviceGet(ctypes.byref(dev), 0) == 0
        assert lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
        assert lib.cuCtxSetCurrent(ctx) == 0
        buf = ctypes.c_uint64()
        assert lib.cuMemAlloc_v2(ctypes.byref(buf), 64 << 20) == 0
        assert lib.cuMemsetD8_v2(buf, 0x5A, 64 << 20) == 0
        lib.cuCtxSynchronize()
    before = mem_used(lib)
    limits0 = get_limits(lib)
    t0 = time.perf_counter()
    set_rc = {}
    for k in shrink:
        set_rc[k] = lib.cuCtxSetLimit(LIMITS[k], 0)
    shrink_ms = (time.perf_counter() - t0) * 1000
    after = mem_used(lib)
    print(json.dumps({"ready": True, "usedBytes": before, "usedAfterShrinkBytes": after, "limits": limits0,
                      "limitsAfter": get_limits(lib), "setRc": set_rc, "shrinkMs": round(shrink_ms, 2)}), flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    for k in shrink:
        lib.cuCtxSetLimit(LIMITS[k], limits0[k])
    grow_ms = (time.perf_counter() - t0) * 1000
    if kind == "torch":
        import torch
        ok = abs(float(m(x).sum()) - ref) < 1e-3 * max(1.0, abs(ref))
        loss = m(x).square().mean(); loss.backward(); opt.step(); torch.cuda.synchronize()
    else:
        host = (ctypes.c_ubyte * (64 << 20))()
        ok = lib.cuMemcpyDtoH_v2(host, buf, 64 << 20) == 0 and all(host[i] == 0x5A for i in range(0, 64 << 20, 4099))
    print(json.dumps({"ok": ok, "growBackMs": round(grow_ms, 2), "usedAtEndBytes": mem_used(lib),
                      "limitsAtEnd": get_limits(lib)}), flush=True)


def rss_anon(pid):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("RssAnon:"):
            return int(l.split()[1]) * 1024
    return None


def anon_ranges(pid):
    """Private anonymous writable mappings of pid as (start, end) pairs."""
    out = []
    for l in open(f"/proc/{pid}/maps"):
        f = l.split()
        if f[1].startswith("rw") and f[1][3] == "p" and (len(f) < 6 or f[5] in ("[heap]", "[stack]")):
            a, b = (int(x, 16) for x in f[0].split("-"))
            out.append((a, b))
    return out


def zero_pages(pid, ranges):
    """(resident bytes read, bytes of whole zero pages) in ranges of pid's memory, read through /proc/pid/mem."""
    try:
        import numpy as np
    except ImportError:
        return None, None
    total = zero = 0
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as m:
        for a, b in ranges:
            for at in range(a, b, 16 << 20):
                n = min(16 << 20, b - at)
                try:
                    m.seek(at)
                    buf = m.read(n)
                except OSError:
                    continue
                arr = np.frombuffer(buf[: len(buf) // 4096 * 4096], dtype=np.uint64).reshape(-1, 512)
                total += len(buf)
                zero += int((~arr.any(axis=1)).sum()) * 4096
    return total, zero


def new_parts(before, after):
    """Parts of the `after` ranges no `before` range covered (what appeared in between)."""
    out = []
    for a, b in after:
        cur = a
        for c, d in sorted(before):
            if d <= cur or c >= b:
                continue
            if c > cur:
                out.append((cur, c))
            cur = max(cur, d)
        if cur < b:
            out.append((cur, b))
    return out


def ctl(ckpt, action, pid):
    r = subprocess.run([ckpt, action, str(pid)], capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure(ckpt, kind, shrink):
    # PROBE_SHIM: a library preloaded into the target only (bench/gpu/mmap_shim.c: where the driver maps its copy).
    env = dict(os.environ, LD_PRELOAD=os.environ["PROBE_SHIM"]) if os.environ.get("PROBE_SHIM") else None
    p = subprocess.Popen([sys.executable, __file__, "--target", kind, ",".join(shrink)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env)
    first = json.loads(p.stdout.readline())
    r0 = rss_anon(p.pid)
    maps0 = anon_ranges(p.pid)
    lock = ctl(ckpt, "lock", p.pid)
    ck = ctl(ckpt, "checkpoint", p.pid)
    r1 = rss_anon(p.pid)
    # Where the driver's host copy lies and how much of it is zero: pages in mappings that appeared with
    # the checkpoint, and pages of every private anonymous mapping (what CRIU would write).
    maps1 = anon_ranges(p.pid)
    fresh = new_parts(maps0, maps1)
    new_read, new_zero = zero_pages(p.pid, fresh)
    all_read, all_zero = zero_pages(p.pid, maps1)
    rest = ctl(ckpt, "restore", p.pid)
    unl = ctl(ckpt, "unlock", p.pid)
    p.stdin.write("go\n"); p.stdin.flush()
    last = json.loads(p.stdout.readline())
    p.wait()
    return {"kind": kind, "shrink": shrink, **first, "rssAnonGrowthBytes": r1 - r0, "checkpointMs": ck["ms"],
            "restoreMs": rest["ms"],
            "newMappingBytes": sum(b - a for a, b in fresh), "newMappingZeroBytes": new_zero, "newMappingReadBytes": new_read,
            "anonReadBytes": all_read, "anonZeroBytes": all_zero, "lockOk": lock["ok"], "checkpointOk": ck["ok"], **last}


if __name__ == "__main__":
    if sys.argv[1] == "--target":
        target(sys.argv[2], [s for s in sys.argv[3].split(",") if s])
        sys.exit(0)
    ckpt = sys.argv[1]
    reps = int(os.environ.get("PROBE_REPS", "2"))
    kinds = os.environ.get("PROBE_KINDS", "driver,torch").split(",")
    shrinks = [[s for s in x.split("+") if s] for x in os.environ.get("PROBE_SHRINK", ",stack,stack+malloc_heap+printf_fifo").split(",")]
    for kind in kinds:
        for shrink in shrinks:
            for _ in range(reps):
                print(json.dumps(measure(ckpt, kind, shrink)), flush=True)
