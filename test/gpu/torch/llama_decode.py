"""A decoder with Llama-2-13B's shapes (40 layers, d_model 5120, 40 heads, SwiGLU 13824, vocab 32000;
~13.0 B parameters, ~26 GB in fp16) and random weights generated on the GPU (nothing is downloaded),
generating tokens greedily with a KV cache. It speaks the workloads' stdout protocol so phos can
checkpoint it mid-generation: `ready`, then `step N t <wall ms> ok tok=ID` per generated token, and at
the end `checksum <16 hex>` over the generated ids and the last logits. Deterministic: the same seed and
--steps give the same checksum with or without a checkpoint/restore in between.
  python3 test/gpu/torch/llama_decode.py --steps 1000 [--step-ms 20] [--layers 40]"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phos_torch as pt  # noqa: E402  (sets CUBLAS_WORKSPACE_CONFIG before torch loads)
import torch  # noqa: E402

D, HEADS, FFN, VOCAB = 5120, 40, 13824, 32000
HD = D // HEADS
DT = torch.float16 if pt.DEV == "cuda" else torch.float32  # fp16 on the GPU; fp32 only for a CPU try-out


def weight(gen, *shape, scale):
    """Random fp16 weight made on the GPU from `gen`, scaled so activations stay finite through 40 layers."""
    return (torch.randn(*shape, generator=gen, device=pt.DEV, dtype=DT) * scale).contiguous()


def make_model(layers, seed):
    g = torch.Generator(device=pt.DEV).manual_seed(seed)
    s_in, s_ffn = D ** -0.5, FFN ** -0.5
    m = {"embed": weight(g, VOCAB, D, scale=1.0), "head": weight(g, VOCAB, D, scale=s_in), "layers": []}
    for _ in range(layers):
        m["layers"].append({
            "qkv": weight(g, 3 * D, D, scale=s_in), "o": weight(g, D, D, scale=s_in),
            "gate_up": weight(g, 2 * FFN, D, scale=s_in), "down": weight(g, D, FFN, scale=s_ffn),
        })
    return m


def rms(x):
    return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5).to(x.dtype)


def rope(x, pos):
    """Rotary position embedding on [T, HEADS, HD] for positions `pos` ([T])."""
    inv = 1.0 / (10000 ** (torch.arange(0, HD, 2, device=pt.DEV, dtype=torch.float32) / HD))
    ang = pos.float()[:, None] * inv[None, :]
    cos, sin = ang.cos()[:, None, :].to(x.dtype), ang.sin()[:, None, :].to(x.dtype)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


def attend(q, k, v, start):
    """Causal attention of queries at positions start.. ([HEADS, T, HD]) over keys 0..start+T-1."""
    t, n = q.shape[1], k.shape[1]
    scores = (q @ k.transpose(1, 2)).float() * HD ** -0.5
    allowed = torch.arange(n, device=pt.DEV)[None, :] <= torch.arange(start, start + t, device=pt.DEV)[:, None]
    scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(-1).to(v.dtype) @ v


def forward(m, cache, ids, start):
    """Logits of the last position for `ids` at positions start.., appending to the KV cache."""
    x = m["embed"][ids]
    t = ids.shape[0]
    pos = torch.arange(start, start + t, device=pt.DEV)
    for i, L in enumerate(m["layers"]):
        q, k, v = (rms(x) @ L["qkv"].t()).view(t, 3, HEADS, HD).unbind(1)
        q, k = rope(q, pos), rope(k, pos)
        kc, vc = cache[i]
        kc[start:start + t], vc[start:start + t] = k, v
        K, V = kc[:start + t].transpose(0, 1), vc[:start + t].transpose(0, 1)
        x = x + attend(q.transpose(0, 1), K, V, start).transpose(0, 1).reshape(t, D) @ L["o"].t()
        gate, up = (rms(x) @ L["gate_up"].t()).chunk(2, dim=-1)
        x = x + (torch.nn.functional.silu(gate) * up) @ L["down"].t()
    return (rms(x[-1:]) @ m["head"].t()).float()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=128, help="tokens to generate")
    ap.add_argument("--step-ms", type=int, default=0, help="pause after each token")
    ap.add_argument("--layers", type=int, default=40)
    ap.add_argument("--prompt", type=int, default=32, help="prompt length (random token ids)")
    ap.add_argument("--seed", type=int, default=2013)
    a = ap.parse_args()
    pt.setup_determinism()
    torch.set_grad_enabled(False)
    m = make_model(a.layers, a.seed)
    ctx = a.prompt + a.steps
    cache = [(torch.zeros(ctx, HEADS, HD, device=pt.DEV, dtype=DT),
              torch.zeros(ctx, HEADS, HD, device=pt.DEV, dtype=DT)) for _ in range(a.layers)]
    g = torch.Generator(device=pt.DEV).manual_seed(a.seed + 1)
    prompt = torch.randint(0, VOCAB, (a.prompt,), generator=g, device=pt.DEV)
    params = sum(t.numel() for L in m["layers"] for t in L.values()) + m["embed"].numel() + m["head"].numel()
    print("model %.2f B parameters, %.1f GB fp16" % (params / 1e9, params * 2 / 1e9), flush=True)
    logits = forward(m, cache, prompt, 0)
    pt.sync()
    print("ready", flush=True)
    ids, pos = [], a.prompt
    for i in range(1, a.steps + 1):
        nxt = logits.argmax(-1)
        tok = int(nxt.item())  # synchronizes: the stamp is after the token's GPU work
        ids.append(tok)
        print("step %d t %.3f ok tok=%d" % (i, time.time() * 1000.0, tok), flush=True)
        logits = forward(m, cache, nxt.view(1), pos)
        pos += 1
        if a.step_ms:
            time.sleep(a.step_ms / 1000.0)
    pt.sync()
    # Random weights in fp16 could overflow; a run that did would still be deterministic, so say it.
    print("finite %s" % ("yes" if bool(torch.isfinite(logits).all()) else "NO"), flush=True)
    print("checksum %s" % pt.digest(torch.tensor(ids), logits), flush=True)


if __name__ == "__main__":
    main()
