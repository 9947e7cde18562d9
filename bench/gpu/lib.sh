# Sourced by the GPU scripts that drive bundled agents (bench/gpu/phos.sh, migrate.sh, torch.sh through
# phos.sh, test/gpu/multigpu.sh): the repository's paths, the Node.js and pccl addon bench/gpu/pack.sh
# carries (the GPU machine has neither), and the native build made there once per machine.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/bench/results}
mkdir -p "$OUT" build
CARRY="$ROOT/.carry/gpu"
now_ms() { date +%s%3N; }

# NODE: this machine's node, else the carried one unpacked (once) to /tmp.
NODE=$(command -v node || true)
if [ -z "$NODE" ]; then NODE=/tmp/phos-node; [ -x $NODE ] || { xz -dc "$CARRY/node.xz" >$NODE && chmod +x $NODE; }; fi
export PHOS_PCCL_ADDON="${PHOS_PCCL_ADDON:-$CARRY/pccl.node}"  # another build for an A/B

# native/ built into $1 (relative to the repository or absolute) unless it is there already; a bundled
# agent finds that build's gpu-probe (its GPU list) through PHOS_GPU_PROBE, not next to its sources.
gpu_build() {
  local b=$1
  case $b in /*) ;; *) b=$ROOT/$b ;; esac
  export PHOS_GPU_PROBE="$b/tools/gpu-probe"
  [ -x "$b/workloads/counter" ] && [ -f "$b/hijack/libphos.so" ] && [ -x "$b/tools/ckpt-ctl" ] && return 0
  cmake -S native -B "$b" -DCMAKE_BUILD_TYPE=Release >"$b.cmake.log" 2>&1 || { tail -20 "$b.cmake.log" >&2; return 1; }
  cmake --build "$b" -j"$(nproc)" >"$b.build.log" 2>&1 || { grep -E 'error' "$b.build.log" | head -20 >&2; return 1; }
}
