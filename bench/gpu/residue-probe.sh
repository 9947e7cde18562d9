#!/usr/bin/env bash
# The driver checkpoint's residue against the context's limits (bench/gpu/residue_probe.py): how much it
# copies to host memory, where (the mappings that appear with it) and how much of that is zero pages.
# GPU machine: bash bench/gpu/residue-probe.sh   -> $OUT/gpu-residue-probe.jsonl
#   PROBE_KINDS=driver,torch PROBE_SHRINK=stack PROBE_REPS=1   the configurations (see residue_probe.py)
#   PROBE_SHIM=1   preloads bench/gpu/mmap_shim.c into the target: which library made each large anonymous
#                  mapping -> $OUT/gpu-residue-shim.txt (PHOS_SHIM_THP=1 also advises huge pages on them)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
gpu_build build/gpu || exit 1
if [ "${PROBE_SHIM:-}" = 1 ]; then
  gcc -shared -fPIC -O2 -o "$ROOT/build/gpu/mmap_shim.so" bench/gpu/mmap_shim.c -ldl || exit 1
  PROBE_REPS=${PROBE_REPS:-2} PROBE_SHIM="$ROOT/build/gpu/mmap_shim.so" python3 bench/gpu/residue_probe.py "$ROOT/build/gpu/tools/ckpt-ctl" \
    2> >(grep '^shim-mmap' >"$OUT/gpu-residue-shim.txt") | tee "$OUT/gpu-residue-probe.jsonl"
else
  PROBE_REPS=${PROBE_REPS:-2} python3 bench/gpu/residue_probe.py "$ROOT/build/gpu/tools/ckpt-ctl" | tee "$OUT/gpu-residue-probe.jsonl"
fi
