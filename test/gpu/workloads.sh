#!/usr/bin/env bash
# Builds native/ (workloads, and cudasim for comparison) and runs every workload on the real driver and
# on cudasim, then checks that the checksums agree with each other and with each workload's CPU model
# (--reference). Run from the repo root on a GPU machine; writes $OUT/workloads.log when $OUT is set.
# Exit status: 0 when every real-driver run passed and every available checksum matched.
set -u -o pipefail
cd "$(dirname "$0")/../.."
if [[ -n ${OUT:-} ]]; then
  mkdir -p "$OUT"
  exec > >(tee "$OUT/workloads.log") 2>&1
fi
build=${PHOS_GPU_BUILD:-build/gpu-native}
jobs=$(nproc 2>/dev/null || echo 4)
cuda=${CUDA_HOME:-/usr/local/cuda}
export PATH=$cuda/bin:$PATH

say() { printf '%s\n' "$*"; }
say "== host: $(uname -srm); $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
say "== nvcc: $(nvcc --version 2>/dev/null | tail -1); cmake: $(command -v cmake || echo none); g++: $(g++ -dumpfullversion 2>/dev/null)"

# ---------------------------------------------------------------------------------------------- build
bin=""       # folder of the four workload programs
cudasim=""   # folder holding cudasim's libcuda.so.1, when it built
t0=$(date +%s%N)
targets=(counter streams vmm-grow ptr-chase workloads-sim-kernels)
mkdir -p "$(dirname "$build")"
# 1. cmake: cudasim + the workloads linked against it (nothing else of native/ is needed here).
if [[ -n ${PHOS_GPU_MANUAL_BUILD:-} ]]; then
  say "!! PHOS_GPU_MANUAL_BUILD set: skipping cmake"
elif command -v cmake >/dev/null; then
  if cmake -S native -B "$build" -DCMAKE_BUILD_TYPE=Release >"$build.configure.log" 2>&1 &&
     cmake --build "$build" -j"$jobs" --target cudasim "${targets[@]}" >"$build.build.log" 2>&1; then
    bin=$build/workloads
  else
    say "!! cmake build with cudasim failed (tail below); retrying the workloads alone, without cudasim"
    tail -n 25 "$build.configure.log" "$build.build.log" 2>/dev/null
    build=$build-wl
    # 2. cmake: the workloads alone, linked against the generated libcuda.so.1 stub.
    if cmake -S native -B "$build" -DCMAKE_BUILD_TYPE=Release -DPHOS_WORKLOADS_LINK_CUDASIM=OFF >"$build.log" 2>&1 &&
       cmake --build "$build" -j"$jobs" --target "${targets[@]}" >>"$build.log" 2>&1; then
      bin=$build/workloads
    else
      tail -n 25 "$build.log"
    fi
  fi
  lib=$(find "$build" -name libcuda.so.1 -path '*cudasim*' 2>/dev/null | head -1)
  [[ -n $lib ]] && cudasim=$(cd "$(dirname "$lib")" && pwd)
else
  say "!! cmake not found"
fi
# 3. By hand (no cmake, or cmake failed): nvcc + g++ without -Werror, linked against the driver's own
#    libcuda.so.1; no cudasim comparison.
if [[ -z $bin ]]; then
  say "!! building the workloads with nvcc and g++ directly"
  out=$build-manual
  mkdir -p "$out/gen"
  drv=$(ldconfig -p | sed -n 's/.*libcuda.so.1 .*=> //p' | head -1)
  if [[ -z $drv ]]; then
    IFS=: read -r -a dirs <<<"${LD_LIBRARY_PATH:-}"
    for d in ${dirs[@]+"${dirs[@]}"}; do [[ -z $drv && -e $d/libcuda.so.1 ]] && drv=$d/libcuda.so.1; done
  fi
  say "   linking against ${drv:-no libcuda.so.1 found}"
  ok=1
  for w in counter streams vmm-grow ptr-chase; do
    nvcc --ptx -arch=compute_90 -std=c++17 -Inative/workloads/kernels -o "$out/gen/$w.ptx" "native/workloads/kernels/$w.cu" || ok=0
    { printf '#pragma once\nstatic const char kPtx[] = R"PHOSPTX('; cat "$out/gen/$w.ptx"; printf ')PHOSPTX";\n'; } >"$out/gen/$w-ptx.h"
    g++ -std=c++20 -O2 -Inative/workloads -I"$out/gen" -I"$cuda/include" -o "$out/$w" \
      "native/workloads/src/$w.cpp" native/workloads/src/common.cpp "$drv" || ok=0
  done
  [[ $ok == 1 ]] && bin=$out
fi
say "== build: $(( ($(date +%s%N) - t0) / 1000000 )) ms; workloads=${bin:-FAILED} cudasim=${cudasim:-none}"
if [[ -z $bin ]]; then
  say "RESULT build FAILED"
  exit 1
fi

# ------------------------------------------------------------------------------------------------ run
real_env=(env "LD_LIBRARY_PATH=$(tr ':' '\n' <<<"${LD_LIBRARY_PATH:-}" | grep -v cudasim | paste -sd: -)")
sim_env=(env "LD_LIBRARY_PATH=$cudasim${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
say "== real driver: $("${real_env[@]}" ldd "$bin/counter" | grep libcuda)"
[[ -n $cudasim ]] && say "== cudasim:     $("${sim_env[@]}" ldd "$bin/counter" | grep libcuda)"

failures=0
# run MODE NAME ARGS...: runs one workload, prints its tail, sets $sum to its checksum or FAIL(rc).
run() {
  local mode=$1 name=$2
  shift 2
  local -a envv=("${real_env[@]}")
  [[ $mode == cudasim ]] && envv=("${sim_env[@]}")
  local log t1 rc
  log=$(mktemp)
  t1=$(date +%s%N)
  "${envv[@]}" "$bin/$name" "$@" >"$log" 2>&1
  rc=$?
  local ms=$(( ($(date +%s%N) - t1) / 1000000 ))
  local steps bad
  steps=$(grep -c '^step .* ok$' "$log")
  bad=$(grep -c '^step .* BAD$' "$log")
  sum=$(sed -n 's/^checksum //p' "$log")
  [[ $rc -eq 0 && -n $sum ]] || sum="FAIL(rc=$rc)"
  say "   $mode $name $*: rc=$rc ${ms}ms steps_ok=$steps bad=$bad checksum=$sum"
  grep -E '^(device|stat) ' "$log" | sed 's/^/      /'
  [[ $rc -eq 0 ]] || tail -n 8 "$log" | sed 's/^/      | /'
  rm -f "$log"
}

# compare NAME ARGS...: real driver vs cudasim vs the CPU model, same arguments.
compare() {
  local name=$1
  shift
  local ref real sim="skipped" verdict
  ref=$("${real_env[@]}" "$bin/$name" --reference "$@" 2>&1 | sed -n 's/^checksum //p')
  run real "$name" "$@"
  real=$sum
  if [[ -n $cudasim ]]; then
    run cudasim "$name" "$@"
    sim=$sum
  fi
  verdict=match
  [[ $real == "$ref" ]] || verdict=MISMATCH
  [[ $sim == skipped || $sim == "$ref" ]] || verdict=MISMATCH
  [[ $verdict == match ]] || failures=$((failures + 1))
  say "RESULT $name [$*] real=$real cudasim=$sim reference=${ref:-none} -> $verdict"
}

say "== default sizes (real driver vs cudasim vs CPU model)"
compare counter --step-ms 0
compare streams --step-ms 0
compare vmm-grow --step-ms 0
compare ptr-chase --step-ms 0

big=()
if [[ -n ${PHOS_GPU_SKIP_BIG:-} ]]; then
  say "== large sizes skipped (PHOS_GPU_SKIP_BIG)"
else
  say "== large sizes (real driver vs CPU model)"
fi
[[ -n ${PHOS_GPU_SKIP_BIG:-} ]] || big=("counter --mib 4096 --buffers 8 --hot-kib 65536 --steps 40 --verify-every 10 --step-ms 0"
     "streams --streams 8 --kib 16384 --steps 20 --step-ms 0"
     "vmm-grow --max-mib 256 --seg-mib 32 --reserve-mib 4096 --steps 24 --step-ms 0"
     "ptr-chase --buffers 64 --kib 512 --walkers 65536 --hops 16 --steps 12 --step-ms 0")
for spec in ${big[@]+"${big[@]}"}; do
  read -r -a a <<<"$spec"
  saved=$cudasim
  cudasim=""   # cudasim at these sizes takes minutes on a few cores; the CPU model is the comparator
  compare "${a[@]}"
  cudasim=$saved
done

say "== summary: $failures mismatch(es)"
[[ $failures -eq 0 ]]
