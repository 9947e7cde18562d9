/* Device-side pieces every workload's PTX carries: the grid-stride loop and the wl_digest reduction.
 * Each kernels/*.cu includes this, so each module has its own wl_digest entry (same semantics, one CPU
 * twin in sim-kernels.cpp). pre: blockDim.x is a multiple of 32 (the host always launches 256). */
#ifndef PHOS_WORKLOADS_COMMON_CUH
#define PHOS_WORKLOADS_COMMON_CUH

#include "mix.h"

#define WL_GRID_STRIDE(i, n)                                                                   \
  for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                 \
       i += (uint64_t)gridDim.x * blockDim.x)

/* Sum over the warp; the wrapping sum is order-independent, so the result is exact. */
__device__ __forceinline__ uint64_t wl_warp_sum(uint64_t s) {
  for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
  return s;
}

/* One atomic per warp: adds the warp's partial sum to *out. */
__device__ __forceinline__ void wl_warp_add(unsigned long long *out, uint64_t s) {
  s = wl_warp_sum(s);
  if ((threadIdx.x & 31) == 0) atomicAdd(out, (unsigned long long)s);
}

/* *out += sum over i < n of wl_digest_term(p[i], base + i). A range digested in pieces with the right
 * `base` adds up to the digest of the whole. */
extern "C" __global__ void wl_digest(const uint64_t *p, uint64_t n, uint64_t base, unsigned long long *out) {
  uint64_t s = 0;
  WL_GRID_STRIDE(i, n) s += wl_digest_term(p[i], base + i);
  wl_warp_add(out, s);
}

#endif
