"""A PyTorch training loop (the small transformer + AdamW of phos_torch.py) that speaks the workloads'
stdout protocol, so phos can checkpoint it mid-run: `ready`, then `step N t <wall ms> ok loss=L` per
step, and at the end `checksum <16 hex>` over every parameter. Deterministic: the same --steps give the
same checksum with or without a checkpoint/restore in between.
  python3 test/gpu/torch/train_loop.py --steps 200 [--step-ms 10]"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import phos_torch as pt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--step-ms", type=int, default=10)
    a = ap.parse_args()
    pt.setup_determinism()
    model, _opt, step = pt.make_training()
    pt.sync()
    print("ready", flush=True)
    for i in range(1, a.steps + 1):
        loss = step(i).item()  # .item() synchronizes: the stamp is after the step's GPU work
        print("step %d t %.3f ok loss=%.6f" % (i, time.time() * 1000.0, loss), flush=True)
        if a.step_ms:
            time.sleep(a.step_ms / 1000.0)
    pt.sync()
    print("checksum %s" % pt.digest(*model.parameters()), flush=True)


if __name__ == "__main__":
    main()
