#!/usr/bin/env bash
# libphos on a real GPU (issue 4's H200 acceptance): builds native/ (libphos, the workloads; cudasim when
# it builds), then
#   1. every workload without libphos, with it (no agent: allocator + pass-through) and armed
#      (PHOS_ARM=1): same checksum, equal to the CPU model's;
#   2. test/gpu/torch/phos_torch.py (matmul loop, small transformer + AdamW, Triton kernel, CUDA graph
#      replay, allocation churn), default allocator and expandable segments, without libphos (twice
#      with the default allocator: the baseline's own determinism), with it, and armed: identical
#      result hashes;
#   3. libphos's counters from its exit-time `phos-stats` line (PHOS_STATS=1);
#   4. cuLaunchKernel submit cost (test/gpu/launch-bench.cpp): in-process against the driver's own
#      function, and across processes;
#   5. PyTorch training-step time without and with libphos (disarmed), alternating processes.
# Run from the repo root on a GPU machine. Writes $OUT/libphos.log, $OUT/libphos.json and
# $OUT/runs.tar.gz (every run's stdout/stderr); OUT defaults to build/libphos-out.
# Environment: PHOS_LIBPHOS_SIM=1 runs on cudasim (local iteration: no PyTorch, small sizes);
# PHOS_LIBPHOS_ONLY=wl,torch,bench,step selects sections; PHOS_GPU_BUILD (build folder);
# PHOS_STEP_ROUNDS (alternating none/phos step-time rounds, default 5);
# PHOS_TORCH_VA_SIZE (region size for the expandable-segments runs, default 1T: PyTorch reserves
# 1⅛ × GPU memory per segment, more than the default 64G region holds).
# Exit status: 0 when everything matched and the cost targets were met.
set -u -o pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-build/libphos-out}
mkdir -p "$out"
exec > >(tee "$out/libphos.log") 2>&1
sim=${PHOS_LIBPHOS_SIM:-0}
only=${PHOS_LIBPHOS_ONLY:-wl,torch,bench,step}
build=${PHOS_GPU_BUILD:-build/gpu-libphos}
jobs=$(nproc 2>/dev/null || echo 4)
cuda=${CUDA_HOME:-/usr/local/cuda}
export PATH=$cuda/bin:$PATH
work=$(mktemp -d /tmp/libphos.XXXXXX)
rec=$work/records.tsv
: >"$rec"
t_start=$(date +%s)

say() { printf '%s\n' "$*"; }
record() { (IFS=$'\t'; printf '%s\n' "$*") >>"$rec"; }
want() { [[ ,$only, == *,$1,* ]]; }
elapsed() { echo $(( $(date +%s) - t_start ))s; }

gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
say "== host: $(uname -srm); gpu: ${gpu:-none}; sim=$sim"
say "== nvcc: $(nvcc --version 2>/dev/null | tail -1); cmake: $(cmake --version 2>/dev/null | head -1); g++: $(g++ -dumpfullversion 2>/dev/null)"
record info gpu "${gpu%%,*}"
record info driver "${gpu##*, }"

# ---------------------------------------------------------------------------------------------- build
t0=$(date +%s%N)
mkdir -p "$(dirname "$build")"
targets=(phos counter streams vmm-grow ptr-chase)
lib="" bin="" simdir=""
if cmake -S native -B "$build" -DCMAKE_BUILD_TYPE=Release >"$work/configure.log" 2>&1 &&
   cmake --build "$build" -j"$jobs" --target cudasim workloads-sim-kernels phos-hijack-sim-kernels "${targets[@]}" \
     >"$work/build.log" 2>&1; then
  simdir=$build/cudasim
else
  say "!! cmake build with cudasim failed (tail below); retrying libphos + workloads alone, warnings not errors"
  tail -n 30 "$work/configure.log" "$work/build.log" 2>/dev/null | grep -v '^$' | tail -n 30
  build=$build-nosim
  # -Wno-error after the project's -Werror: the GPU image's compiler may warn where ours does not.
  if cmake -S native -B "$build" -DCMAKE_BUILD_TYPE=Release -DPHOS_WORKLOADS_LINK_CUDASIM=OFF \
       "-DCMAKE_CXX_COMPILE_OBJECT=<CMAKE_CXX_COMPILER> <DEFINES> <INCLUDES> <FLAGS> -Wno-error -o <OBJECT> -c <SOURCE>" \
       >"$work/configure2.log" 2>&1 &&
     cmake --build "$build" -j"$jobs" --target "${targets[@]}" >"$work/build2.log" 2>&1; then
    :
  else
    tail -n 40 "$work/configure2.log" "$work/build2.log" 2>/dev/null
  fi
fi
[[ -f $build/hijack/libphos.so ]] && lib=$(cd "$build/hijack" && pwd)/libphos.so
[[ -x $build/workloads/counter ]] && bin=$build/workloads
[[ -n $simdir && -f $simdir/libcuda.so.1 ]] && simdir=$(cd "$simdir" && pwd) || simdir=""
grep -q 'PHOS_NVCC-NOTFOUND' "$build/CMakeCache.txt" 2>/dev/null && say "!! nvcc not found: libphos has no hash kernels"
# launch-bench: linked for the soname only (cudasim's libcuda.so.1, the workloads' stub, or the driver's).
link=""
for c in "$simdir/libcuda.so.1" "$build/workloads/link-stub/libcuda.so.1" \
         "$(find "$build" -name 'libworkloads-cuda-stub.so' 2>/dev/null | head -1)" \
         "$(ldconfig -p 2>/dev/null | sed -n 's/.*libcuda.so.1 .*=> //p' | head -1)"; do
  [[ -n $c && -f $c ]] && { link=$c; break; }
done
bench=""
if [[ -n $link ]] && g++ -std=c++20 -O2 -Wall -I"$cuda/include" -o "$build/launch-bench" test/gpu/launch-bench.cpp \
     "$link" -ldl >"$work/bench-build.log" 2>&1; then
  bench=$build/launch-bench
else
  say "!! launch-bench did not build (link against '${link:-nothing}')"; cat "$work/bench-build.log"
fi
benchsim=""
if [[ $sim == 1 && -n $simdir ]]; then
  g++ -std=c++20 -O2 -shared -fPIC -Inative/cudasim/include -o "$build/launch-bench-sim.so" \
    test/gpu/launch-bench-sim.cpp && benchsim=$build/launch-bench-sim.so
fi
say "== build: $(( ($(date +%s%N) - t0) / 1000000 )) ms; libphos=${lib:-FAILED} workloads=${bin:-FAILED} cudasim=${simdir:-none} bench=${bench:-none}"
if [[ -z $lib ]]; then
  say "RESULT build FAILED"
  tar -C "$work" -czf "$out/runs.tar.gz" . 2>/dev/null
  exit 1
fi

# ------------------------------------------------------------------------------------------- runners
# Driver: NVIDIA's (cudasim's folder removed from LD_LIBRARY_PATH), or cudasim with PHOS_LIBPHOS_SIM=1.
ldpath=$(tr ':' '\n' <<<"${LD_LIBRARY_PATH:-}" | grep -v cudasim | paste -sd: -)
base_env=(env -u LD_PRELOAD -u PHOS_ARM -u PHOS_LOG -u PHOS_AGENT_SOCK -u PHOS_DISABLE "LD_LIBRARY_PATH=$ldpath")
if [[ $sim == 1 ]]; then
  [[ -n $simdir ]] || { say "RESULT cudasim did not build: no sim run"; exit 1; }
  base_env=(env -u LD_PRELOAD -u PHOS_ARM -u PHOS_LOG -u PHOS_AGENT_SOCK -u PHOS_DISABLE
            "LD_LIBRARY_PATH=$simdir${ldpath:+:$ldpath}")
fi
# mode_env MODE: none | phos (preloaded, no agent, disarmed) | armed (PHOS_ARM=1) | debug (phos, PHOS_LOG=debug)
mode_env() {
  menv=("${base_env[@]}")
  case $1 in
    none*) ;;
    phos) menv+=("LD_PRELOAD=$lib" PHOS_STATS=1) ;;
    armed) menv+=("LD_PRELOAD=$lib" PHOS_STATS=1 PHOS_ARM=1) ;;
    debug) menv+=("LD_PRELOAD=$lib" PHOS_STATS=1 PHOS_LOG=debug) ;;
    debug-armed) menv+=("LD_PRELOAD=$lib" PHOS_STATS=1 PHOS_ARM=1 PHOS_LOG=debug) ;;
  esac
}
stats_of() { grep -o 'phos-stats .*' "$1" 2>/dev/null | tail -1; }
n=0
failures=0

# ------------------------------------------------------------------------------------------ workloads
if want wl && [[ -n $bin ]]; then
  say "== 1. workloads: without libphos, with it (no agent), armed  [$(elapsed)]"
  specs=("counter --step-ms 0" "streams --step-ms 0" "vmm-grow --step-ms 0" "ptr-chase --step-ms 0")
  [[ $sim == 1 ]] || specs+=("counter --mib 1024 --buffers 4 --hot-kib 4096 --steps 20 --verify-every 5 --step-ms 0"
                             "vmm-grow --max-mib 256 --seg-mib 32 --reserve-mib 4096 --steps 24 --step-ms 0")
  for spec in "${specs[@]}"; do
    read -r -a a <<<"$spec"
    mode_env none
    ref=$("${menv[@]}" "$bin/${a[0]}" --reference "${a[@]:1}" 2>/dev/null | sed -n 's/^checksum //p')
    for mode in none phos armed; do
      n=$((n + 1))
      mode_env $mode
      t1=$(date +%s%N)
      timeout 180 "${menv[@]}" "$bin/${a[0]}" "${a[@]:1}" >"$work/$n.out" 2>"$work/$n.err"
      rc=$?
      ms=$(( ($(date +%s%N) - t1) / 1000000 ))
      sum=$(sed -n 's/^checksum //p' "$work/$n.out")
      [[ -n $sum ]] || sum=none
      st=$(stats_of "$work/$n.err")
      record wl "$spec" $mode $rc "$sum" $ms "${ref:-none}" "$st"
      say "   [$n] $mode $spec: rc=$rc ${ms}ms checksum=$sum reference=${ref:-none}"
      [[ -n $st ]] && say "       $st"
      if [[ $rc -ne 0 || $sum != "${ref:-$sum}" ]]; then
        tail -n 15 "$work/$n.err" | sed 's/^/      | /'
        if [[ $mode != none ]]; then
          say "       re-running with PHOS_LOG=debug"
          mode_env debug$([[ $mode == armed ]] && echo -armed)
          timeout 180 "${menv[@]}" "$bin/${a[0]}" "${a[@]:1}" >"$work/$n.debug.out" 2>"$work/$n.debug.err"
          say "       debug run rc=$? (last lines of its log)"
          grep -v '^step ' "$work/$n.debug.err" | tail -n 40 | sed 's/^/      | /'
        fi
      fi
    done
  done
fi

# -------------------------------------------------------------------------------------------- pytorch
py=${PYTHON:-python3}
have_torch=0
if want torch || want step; then
  if [[ $sim != 1 ]] && "${base_env[@]}" "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
       >/dev/null 2>&1; then
    have_torch=1
  else
    say "== PyTorch with CUDA not available here: PyTorch sections skipped"
    record info torch unavailable
  fi
fi
export CUBLAS_WORKSPACE_CONFIG=:4096:8 PYTHONUNBUFFERED=1
if want torch && [[ $have_torch == 1 ]]; then
  say "== 2. PyTorch checks: without libphos (x2), with it, armed; default allocator and expandable segments  [$(elapsed)]"
  say "   (the runs of one allocator mode run concurrently: results are deterministic either way)"
  # torch_env ALLOC MODE: menv plus the allocator settings
  torch_env() {
    mode_env $2
    if [[ $1 == expandable ]]; then
      menv+=(PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True)
      [[ $2 == none* ]] || menv+=("PHOS_VA_SIZE=${PHOS_TORCH_VA_SIZE:-1T}")
    else
      menv+=(PYTORCH_CUDA_ALLOC_CONF=)
    fi
  }
  for alloc in default expandable; do
    modes=(none phos armed)
    [[ $alloc == default ]] && modes+=(none2)
    declare -A tn=() pid=()
    t1=$(date +%s%N)
    for mode in "${modes[@]}"; do
      n=$((n + 1))
      tn[$mode]=$n
      torch_env $alloc $mode
      timeout 300 "${menv[@]}" "$py" test/gpu/torch/phos_torch.py >"$work/$n.out" 2>"$work/$n.err" &
      pid[$mode]=$!
    done
    for mode in "${modes[@]}"; do
      wait "${pid[$mode]}"
      rc=$?
      k=${tn[$mode]}
      st=$(stats_of "$work/$k.err")
      record trun $alloc $mode $rc "$st"
      say "   [$k] $alloc $mode: rc=$rc (${#modes[@]} concurrent runs; $(( ($(date +%s%N) - t1) / 1000000 )) ms since they started)"
      grep -E '^(config|result|skip|info) ' "$work/$k.out" | sed 's/^/       /'
      [[ -n $st ]] && say "       $st"
      while read -r kind name val _; do
        [[ $kind == result ]] && record torch $alloc $mode "$name" "$val"
        [[ $kind == skip ]] && record torch $alloc $mode "$name" "skip:$val"
      done < <(grep -E '^(result|skip) ' "$work/$k.out")
      grep -E 'phos-hijack\[[0-9]+\]: (warn|error)' "$work/$k.err" | sed 's/phos-hijack\[[0-9]*\]/phos-hijack/' |
        sort | uniq -c | head -n 10 | sed 's/^/      | /'
      if [[ $rc -ne 0 ]]; then
        grep -v 'phos-stats' "$work/$k.err" | tail -n 25 | sed 's/^/      | /'
        if [[ $mode == phos || $mode == armed ]]; then
          say "       re-running with PHOS_LOG=debug"
          torch_env $alloc debug$([[ $mode == armed ]] && echo -armed)
          timeout 300 "${menv[@]}" "$py" test/gpu/torch/phos_torch.py >"$work/$k.debug.out" 2>"$work/$k.debug.err"
          say "       debug run rc=$?"
          grep -E '^(result|skip) ' "$work/$k.debug.out" | sed 's/^/       /'
          grep -vE 'cuGetProcAddress|phos-stats' "$work/$k.debug.err" | tail -n 60 | sed 's/^/      | /'
        fi
      fi
    done
    unset tn pid
  done
fi

# ------------------------------------------------------------------------------------- launch cost
if want bench && [[ -n $bench ]]; then
  say "== 4. cuLaunchKernel submit cost: empty kernel, median ns/launch  [$(elapsed)]"
  bargs=(--batch 256 --repeats 300)
  benv=()
  if [[ $sim == 1 ]]; then
    bargs=(--batch 64 --repeats 30)
    benv=("PHOS_SIM_KERNELS=$simdir/kernels:$benchsim")
  fi
  for round in 1 2 3; do
    for mode in none phos; do
      n=$((n + 1))
      mode_env $mode
      timeout 120 "${menv[@]}" "${benv[@]}" "$bench" "${bargs[@]}" >"$work/$n.out" 2>"$work/$n.err"
      rc=$?
      say "   [$n] round $round $mode: rc=$rc"
      grep -E '^(info|launch|delta) ' "$work/$n.out" | sed 's/^/       /'
      [[ $rc -eq 0 ]] || { tail -n 10 "$work/$n.err" | sed 's/^/      | /'; continue; }
      while read -r _ v m _; do
        record lb $mode $round "${v#variant=}" "${m#ns_median=}"
      done < <(grep '^launch ' "$work/$n.out")
      dl=$(grep '^delta ' "$work/$n.out")
      dis=$(grep -o 'disarmed_ns=[-0-9.]*' <<<"$dl" | cut -d= -f2)
      arm=$(grep -o ' armed_ns=[-0-9.]*' <<<"$dl" | cut -d= -f2)
      record lbdelta $mode $round "${dis:-none}" "${arm:-none}"
    done
  done
fi

# ---------------------------------------------------------------------------------------- step time
if want step && [[ $have_torch == 1 ]]; then
  # Pinned to one core (the step is host-bound: CPU placement is most of the noise), rounds alternate
  # none/phos so drift hits both; one armed run counts the launches a step makes.
  rounds=${PHOS_STEP_ROUNDS:-5}
  pin=()
  command -v taskset >/dev/null && [[ $jobs -ge 4 ]] && pin=(taskset -c $((jobs / 2)))
  say "== 5. PyTorch training step: without vs with libphos (disarmed), $rounds alternating rounds${pin:+, ${pin[*]}}  [$(elapsed)]"
  for round in $(seq 1 "$rounds") count; do
    for mode in none phos; do
      n=$((n + 1))
      steps=300
      if [[ $round == count ]]; then
        [[ $mode == phos ]] || continue
        mode=armed steps=50
      fi
      mode_env $mode
      timeout 180 "${pin[@]}" "${menv[@]}" PYTORCH_CUDA_ALLOC_CONF= "$py" test/gpu/torch/phos_torch.py \
        --bench-steps $steps --warmup 30 >"$work/$n.out" 2>"$work/$n.err"
      rc=$?
      line=$(grep '^steptime ' "$work/$n.out")
      say "   [$n] round $round $mode: rc=$rc $line"
      [[ $rc -eq 0 ]] || { tail -n 15 "$work/$n.err" | sed 's/^/      | /'; continue; }
      m=$(grep -o 'median_ms=[0-9.]*' <<<"$line" | cut -d= -f2)
      lps=$(grep -o 'launches_per_step=[0-9.]*' <<<"$line" | cut -d= -f2)
      if [[ $round == count ]]; then
        [[ -n $lps ]] && record info launches_per_step "$lps"
      else
        [[ -n $m ]] && record step $mode $round "$m"
      fi
    done
  done
fi

# --------------------------------------------------------------------------------------------- summary
say "== summary  [$(elapsed)]"
cp "$rec" "$out/records.tsv"
tar -C "$work" -czf "$out/runs.tar.gz" . 2>/dev/null
env -u LD_PRELOAD "$py" test/gpu/torch/summarize.py "$rec" "$out/libphos.json"
rc=$?
rm -rf "$work"
exit $rc
