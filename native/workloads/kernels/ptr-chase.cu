/* ptr-chase's kernels: every buffer is reached through a table of entries in device memory, so a
 * launch's parameters name only the table (what speculation from parameters cannot see through).
 * CPU twins in sim-kernels.cpp; host side in src/ptr-chase.cpp. */
#include "common.cuh"
#include "ptr-chase.h"

/* Grid y = table entry: fills entry y's buffer with wl_pattern(seed ^ id, i). */
extern "C" __global__ void wl_chase_fill(const wl_chase_entry *table, uint64_t seed) {
  const wl_chase_entry e = table[blockIdx.y];
  uint64_t *p = (uint64_t *)e.ptr;
  WL_GRID_STRIDE(i, e.len) p[i] = wl_pattern(seed ^ e.id, i);
}

/* Walkers hop through the read half of the table (entries [h*nbuf, h*nbuf+nbuf), h = step & 1) and add
 * data-dependent values at data-dependent places in the other half's buffers. Reads and writes never
 * touch the same buffer within one launch, and adds commute, so the result is exact in any order. */
extern "C" __global__ void wl_chase_step(const wl_chase_entry *table, uint64_t nbuf, uint64_t walkers,
                                         uint64_t hops, uint64_t step) {
  WL_GRID_STRIDE(w, walkers) {
    const uint64_t rd = (step & 1) * nbuf, wr = nbuf - rd;
    uint64_t s = wl_chase_seed(step, w);
    for (uint64_t h = 0; h < hops; ++h) {
      const wl_chase_entry re = table[rd + s % nbuf];
      const uint64_t v = ((const uint64_t *)re.ptr)[(s >> 17) % re.len];
      s = wl_mix64(s ^ v);
      const wl_chase_entry we = table[wr + s % nbuf];
      atomicAdd((unsigned long long *)we.ptr + (s >> 23) % we.len, (unsigned long long)(v ^ s));
    }
  }
}

/* One thread: Fisher-Yates shuffle of all n entries, keyed by step. The table holds device pointers
 * that the GPU itself moves. */
extern "C" __global__ void wl_chase_permute(wl_chase_entry *table, uint64_t n, uint64_t step) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  for (uint64_t i = n - 1; i > 0; --i) {
    const uint64_t j = wl_chase_pick(step, i);
    const wl_chase_entry t = table[i];
    table[i] = table[j];
    table[j] = t;
  }
}

/* Grid y = table entry: out[id] += digest of entry y's buffer. */
extern "C" __global__ void wl_chase_digest(const wl_chase_entry *table, unsigned long long *out) {
  const wl_chase_entry e = table[blockIdx.y];
  const uint64_t *p = (const uint64_t *)e.ptr;
  uint64_t s = 0;
  WL_GRID_STRIDE(i, e.len) s += wl_digest_term(p[i], i);
  wl_warp_add(out + e.id, s);
}
