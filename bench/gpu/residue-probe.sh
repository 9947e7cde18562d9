#!/usr/bin/env bash
# The driver checkpoint's residue against the context's limits (bench/gpu/residue_probe.py), and how fast
# CRIU dumps a plain 1.5 GB heap into /dev/shm here. GPU machine: bash bench/gpu/residue-probe.sh
#   -> $OUT/gpu-residue-probe.jsonl
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
gpu_build build/gpu || exit 1
PROBE_REPS=${PROBE_REPS:-2} python3 bench/gpu/residue_probe.py "$ROOT/build/gpu/tools/ckpt-ctl" | tee "$OUT/gpu-residue-probe.jsonl"
