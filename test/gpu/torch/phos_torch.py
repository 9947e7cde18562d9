#!/usr/bin/env python3
"""PyTorch checks for libphos on a real GPU (test/gpu/libphos.sh runs this with and without libphos).

Each check prints one line `result NAME HEX` (a SHA-256 prefix over the final tensors it produced, with
fixed seeds and deterministic algorithms), so two runs agree exactly when the GPU did exactly the same
work; a check that cannot run prints `skip NAME reason`, one that raised prints `result NAME ERROR:type`
(traceback on stderr) and makes the exit status 1. The allocator mode comes from the environment
(PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True or not) and is echoed on the `config` line.

  phos_torch.py [--checks matmul,train,triton,graph,alloc]   correctness checks (default: all)
  phos_torch.py --bench-steps N [--warmup W]                  training-step timing: `steptime ...`
"""
import argparse
import hashlib
import os
import statistics
import sys
import time
import traceback

# Deterministic cuBLAS needs this before the first cuBLAS handle exists.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

try:
    import triton
    import triton.language as tl

    HAVE_TRITON = True
    TRITON_WHY = ""
except Exception as e:  # noqa: BLE001 - any import failure means "no Triton here"
    HAVE_TRITON = False
    TRITON_WHY = "%s: %s" % (type(e).__name__, e)

DEV = os.environ.get("PHOS_TORCH_DEVICE", "cuda")  # "cpu" only to try the script without a GPU


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def setup_determinism():
    try:  # full fp32 matmuls (the default already; set explicitly, old or new API)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    except Exception:  # noqa: BLE001
        pass
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def digest(*tensors):
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach()
        h.update(("%s%s" % (t.dtype, tuple(t.shape))).encode())
        flat = t.contiguous().reshape(-1)
        if flat.numel():
            h.update(flat.view(torch.uint8).cpu().numpy().tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- matmul
def check_matmul():
    g = torch.Generator(device=DEV).manual_seed(1)
    a = torch.randn(1024, 1024, device=DEV, generator=g)
    b = torch.randn(1024, 1024, device=DEV, generator=g) / 32.0
    x = a
    for _ in range(50):
        x = torch.tanh(x @ b)
    hb = a.bfloat16()
    wb = b.bfloat16()
    y = hb
    for _ in range(20):
        y = torch.nn.functional.gelu(y @ wb)
    sync()
    return digest(x, y)


# ------------------------------------------------------------------------------------ small transformer
class Block(nn.Module):
    def __init__(self, d, heads, seq):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.register_buffer("mask", torch.triu(torch.ones(seq, seq, dtype=torch.bool), diagonal=1))

    def forward(self, x):
        bsz, t, c = x.shape
        hd = c // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q = q.view(bsz, t, self.heads, hd).transpose(1, 2)
        k = k.view(bsz, t, self.heads, hd).transpose(1, 2)
        v = v.view(bsz, t, self.heads, hd).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / hd ** 0.5)
        att = att.masked_fill(self.mask[:t, :t], float("-inf"))
        att = torch.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(bsz, t, c)
        x = x + self.proj(y)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class TinyTransformer(nn.Module):
    def __init__(self, d=256, heads=4, layers=2, seq=128, classes=512):
        super().__init__()
        self.inp = nn.Linear(d, d)
        self.pos = nn.Parameter(torch.randn(seq, d) * 0.02)
        self.blocks = nn.ModuleList([Block(d, heads, seq) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        x = self.inp(x) + self.pos[: x.shape[1]]
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x))


def make_training(seed=1234, batch=16, seq=128, d=256, classes=512):
    torch.manual_seed(seed)
    model = TinyTransformer(d=d, seq=seq, classes=classes).to(DEV)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    g = torch.Generator(device=DEV).manual_seed(seed + 1)
    xs = torch.randn(4, batch, seq, d, device=DEV, generator=g)
    ys = torch.randint(0, classes, (4, batch, seq), device=DEV, generator=g)

    def step(i):
        x, y = xs[i % 4], ys[i % 4]
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss

    return model, opt, step


def check_train(steps=20):
    model, opt, step = make_training()
    losses = [step(i).detach() for i in range(steps)]
    sync()
    state = [p for p in model.parameters()]
    for group in opt.state.values():
        state.extend(v for v in group.values() if torch.is_tensor(v) and v.is_cuda)
    print("info train first_loss=%.6f last_loss=%.6f" % (losses[0].item(), losses[-1].item()), flush=True)
    return digest(torch.stack(losses), *state)


# ---------------------------------------------------------------------------------------------- triton
if HAVE_TRITON:

    @triton.jit
    def _fma_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        x = tl.load(x_ptr + offs, mask=m)
        y = tl.load(y_ptr + offs, mask=m)
        tl.store(out_ptr + offs, x * y + x * 0.5, mask=m)


def check_triton():
    if not HAVE_TRITON or DEV != "cuda":
        return None
    n = (1 << 20) + 123
    g = torch.Generator(device=DEV).manual_seed(7)
    x = torch.randn(n, device=DEV, generator=g)
    y = torch.rand(n, device=DEV, generator=g)
    out = torch.empty_like(x)
    grid = (triton.cdiv(n, 1024),)
    for _ in range(10):
        _fma_kernel[grid](x, y, out, n, BLOCK=1024)
        x, out = out, x
    sync()
    return digest(x)


# ----------------------------------------------------------------------------------------------- graph
def check_graph():
    if DEV != "cuda":
        return None
    g = torch.Generator(device=DEV).manual_seed(3)
    static_x = torch.randn(512, 512, device=DEV, generator=g)
    w = torch.randn(512, 512, device=DEV, generator=g) / 24.0
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            torch.relu(static_x @ w) * 0.5 + static_x
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_y = torch.tanh(torch.relu(static_x @ w) * 0.5 + static_x)
    outs = []
    for _ in range(10):
        graph.replay()
        outs.append(static_y.clone())
        static_x.copy_(static_y)
    sync()
    return digest(*outs)


# ----------------------------------------------------------------------------------------------- alloc
def check_alloc():
    """Allocation churn: many sizes, frees, empty_cache (cuMemFree or cuMemUnmap), regrowth."""
    g = torch.Generator(device=DEV).manual_seed(11)
    keep = []
    acc = torch.zeros(1024, device=DEV, dtype=torch.float64)
    sizes = [1 << 10, 1 << 16, 3 << 18, 1 << 20, 5 << 20, 64 << 20, 300 << 20]
    for rnd in range(3):
        live = []
        for i, s in enumerate(sizes):
            t = torch.randn(s // 4, device=DEV, generator=g)
            live.append(t)
            k = min(1024, t.numel())
            acc[:k] += t[:k].double() * (rnd + 1)
            if i % 2 == 0:
                keep.append(t[: 256].clone())
        del live, t
        if DEV == "cuda":
            torch.cuda.empty_cache()
        big = torch.ones(512 << 18, device=DEV) * (rnd + 1)
        acc += big[:1024].double()
        del big
    sync()
    return digest(acc, *keep)


CHECKS = {
    "matmul": check_matmul,
    "train": check_train,
    "triton": check_triton,
    "graph": check_graph,
    "alloc": check_alloc,
}


def run_checks(names):
    failed = 0
    for name in names:
        if name == "triton" and not HAVE_TRITON:
            print("skip triton %s" % TRITON_WHY.replace("\n", " ")[:200], flush=True)
            continue
        t0 = time.perf_counter()
        try:
            h = CHECKS[name]()
            if h is None:
                print("skip %s not on %s" % (name, DEV), flush=True)
                continue
            print("result %s %s %.0fms" % (name, h, (time.perf_counter() - t0) * 1e3), flush=True)
        except Exception as e:  # noqa: BLE001 - report and go on with the other checks
            failed += 1
            traceback.print_exc()
            print("result %s ERROR:%s" % (name, type(e).__name__), flush=True)
    return failed


def phos_launches_tracked():
    """libphos's launches_tracked counter (phos_hijack_get_stats), or None without libphos."""
    import ctypes

    class Stats(ctypes.Structure):  # the leading fields of phos_hijack_stats (native/hijack/include/phos/hijack.h)
        _fields_ = [("size", ctypes.c_uint32), ("region_ok", ctypes.c_uint32), ("va_base", ctypes.c_uint64),
                    ("va_size", ctypes.c_uint64), ("proc_queries", ctypes.c_uint64),
                    ("proc_wrapped", ctypes.c_uint64), ("dlsym_wrapped", ctypes.c_uint64),
                    ("launches_tracked", ctypes.c_uint64)]

    try:
        f = ctypes.CDLL(None).phos_hijack_get_stats
    except (OSError, AttributeError):
        return None
    st = Stats()
    st.size = ctypes.sizeof(Stats)
    f(ctypes.byref(st))
    return st.launches_tracked


def bench(steps, warmup):
    _, _, step = make_training()
    for i in range(warmup):
        step(i)
    sync()
    l0 = phos_launches_tracked()
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        step(i)
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    l1 = phos_launches_tracked()
    q = statistics.quantiles(times, n=10)
    lps = "" if l0 is None or os.environ.get("PHOS_ARM") != "1" else " launches_per_step=%.1f" % ((l1 - l0) / steps)
    print("steptime median_ms=%.4f p10_ms=%.4f p90_ms=%.4f mean_ms=%.4f steps=%d%s" %
          (statistics.median(times), q[0], q[-1], statistics.fmean(times), steps, lps), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checks", default=",".join(CHECKS))
    ap.add_argument("--bench-steps", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=30)
    a = ap.parse_args()
    setup_determinism()
    print("config torch=%s cuda=%s triton=%s alloc_conf=%s preload=%s arm=%s device=%s" % (
        torch.__version__, torch.version.cuda, triton.__version__ if HAVE_TRITON else "none",
        os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "") or "default",
        "libphos" if "libphos" in os.environ.get("LD_PRELOAD", "") else "none",
        os.environ.get("PHOS_ARM", "0"), torch.cuda.get_device_name(0) if DEV == "cuda" else DEV), flush=True)
    if a.bench_steps:
        bench(a.bench_steps, a.warmup)
        return 0
    names = [n for n in a.checks.split(",") if n]
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        print("unknown checks: %s" % ",".join(unknown), file=sys.stderr)
        return 2
    return 1 if run_checks(names) else 0


if __name__ == "__main__":
    sys.exit(main())
