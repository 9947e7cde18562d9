/* vmm-grow's kernels: fill a freshly mapped segment, update the whole mapped range (one launch across
 * every physical allocation behind the VA range). CPU twins in sim-kernels.cpp; host side in
 * src/vmm-grow.cpp. */
#include "common.cuh"

/* p[i] = wl_pattern(seed, base + i) */
extern "C" __global__ void wl_vmm_fill(uint64_t *p, uint64_t n, uint64_t seed, uint64_t base) {
  WL_GRID_STRIDE(i, n) p[i] = wl_pattern(seed, base + i);
}

/* p[i] = wl_lcg_step(p[i], step, i) */
extern "C" __global__ void wl_vmm_update(uint64_t *p, uint64_t n, uint64_t step) {
  WL_GRID_STRIDE(i, n) p[i] = wl_lcg_step(p[i], step, i);
}
