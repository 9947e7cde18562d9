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


def ctl(ckpt, action, pid):
    r = subprocess.run([ckpt, action, str(pid)], capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure(ckpt, kind, shrink):
    p = subprocess.Popen([sys.executable, __file__, "--target", kind, ",".join(shrink)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    first = json.loads(p.stdout.readline())
    r0 = rss_anon(p.pid)
    lock = ctl(ckpt, "lock", p.pid)
    ck = ctl(ckpt, "checkpoint", p.pid)
    r1 = rss_anon(p.pid)
    rest = ctl(ckpt, "restore", p.pid)
    unl = ctl(ckpt, "unlock", p.pid)
    p.stdin.write("go\n"); p.stdin.flush()
    last = json.loads(p.stdout.readline())
    p.wait()
    return {"kind": kind, "shrink": shrink, **first, "rssAnonGrowthBytes": r1 - r0, "checkpointMs": ck["ms"],
            "restoreMs": rest["ms"], "lockOk": lock["ok"], "checkpointOk": ck["ok"], **last}


if __name__ == "__main__":
    if sys.argv[1] == "--target":
        target(sys.argv[2], [s for s in sys.argv[3].split(",") if s])
        sys.exit(0)
    ckpt = sys.argv[1]
    reps = int(os.environ.get("PROBE_REPS", "2"))
    for kind in ("driver", "torch"):
        for shrink in ([], ["stack"], ["stack", "malloc_heap", "printf_fifo"]):
            for _ in range(reps):
                print(json.dumps(measure(ckpt, kind, shrink)), flush=True)
