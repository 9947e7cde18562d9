#!/usr/bin/env bash
# The GPU benchmark suite, one part per device call (each part ends within 10 minutes on an H200; all of
# them within 30). Each part builds what it needs (native/ with nvcc, once per machine) and writes
# $OUT/gpu-<part>.json (plus the files its scripts name); `npm run bench -- report` here turns the files
# copied into bench/results/ into BENCHMARKS.md.
#   here, first:   bash bench/gpu/pack.sh
#   GPU machine:   bash bench/gpu/run.sh PART        (device tool, carry .carry)
# Parts:
#   counter     phos vs driver checkpoint + CRIU on counter at 1, 4, 16 GiB  -> gpu-phos.json, gpu-baseline.json
#   counter32   the same at 32 GiB                                          -> gpu-phos-32.json, gpu-baseline-32.json
#   torch       the PyTorch training loop (AdamW), both systems, 3 runs, residue -> gpu-torch.json
#   llama       a Llama-2-13B-shaped decoder, 26 GB fp16, generating        -> gpu-llama.json
#   migrate     live migration, counter 16 + 1 GiB and the training loop   -> gpu-migrate.json, gpu-migrate-steps.json
#   overhead    libphos's steady-state cost: training-step time with and without it, launch cost -> gpu-overhead.json
#   pccl        pccl transport vs raw TCP between two network namespaces, 1-8 streams  -> gpu-pccl.json
#   misses      what the targets still miss, in one call: torch x3, its migration x3, counter 16 GiB x3, pccl x2
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
export OUT=${OUT:-$ROOT/bench/results}
mkdir -p "$OUT" build
part=${1:-}

# A part that writes a fixed name into $OUT runs with OUT pointed at a scratch folder; the result is renamed.
as() {
  local name=$1 tmp; shift
  tmp=$(mktemp -d)
  (OUT=$tmp "$@")
  local rc=$?
  for f in "$tmp"/*.json; do [ -f "$f" ] && cp "$f" "$OUT/$(basename "${f%.json}")$name.json"; done
  rm -rf "$tmp"
  return $rc
}

case $part in
  counter) bash bench/gpu/phos.sh 1 4 16 && bash bench/gpu/baseline.sh 1 4 16 ;;
  counter32) as -32 bash bench/gpu/phos.sh 32 && as -32 bash bench/gpu/baseline.sh 32 ;;
  torch) PHOS_TORCH_REPS=${PHOS_TORCH_REPS:-3} bash bench/gpu/torch.sh ;;
  llama) PHOS_TORCH_APP=llama bash bench/gpu/torch.sh ;;
  migrate) bash bench/gpu/migrate.sh 16 1 train ;;
  overhead)
    # libphos.sh's full run (workload correctness, PyTorch checks, launch cost, step time); its summary
    # is the part's result.
    OUT=$OUT/overhead bash test/gpu/libphos.sh
    rc=$?
    [ -f "$OUT/overhead/libphos.json" ] && cp "$OUT/overhead/libphos.json" "$OUT/gpu-overhead.json"
    exit $rc ;;
  pccl)
    source bench/gpu/lib.sh
    command -v ip >/dev/null || PATH="$CARRY/ip/bin:$PATH"  # carried by pack.sh: the GPU machine has no iproute2
    PHOS_ROOT=$ROOT PHOS_PCCL_PEER=$CARRY/bundle/transport-peer.mjs PHOS_BENCH_RESULT=$OUT/gpu-pccl.json "$NODE" "$CARRY/bundle/pccl-bench.mjs" ;;
  misses)
    # The targets still missed, in one call (~9 min): the training loop x3 with its baseline, the training
    # loop's migration x3 (phos alone), counter 16 GiB x3, and pccl twice. Each part's files get a suffix
    # so nothing overwrites: gpu-torch.json, gpu-migrate-misses.json, gpu-migrate-steps-misses.json, gpu-phos-misses.json,
    # gpu-pccl-m1.json, gpu-pccl-m2.json; bench/report.ts reads them under those names. Copy them to bench/results/
    # with "commit" set to what pack.sh packed: the GPU machine's copy has no reliable git HEAD.
    PHOS_TORCH_REPS=3 bash bench/gpu/torch.sh
    as -misses env PHOS_BENCH_REPS=3 PHOS_BENCH_BASELINE=0 bash bench/gpu/migrate.sh train
    as -misses env PHOS_BENCH_REPS_LARGE=3 bash bench/gpu/phos.sh 16
    for i in 1 2; do as -m$i bash "$0" pccl; done ;;
  *)
    sed -n '2,/^set -uo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2
    exit 2 ;;
esac
