/* counter's kernels: fill and verify the cold buffers, update the hot buffer (a training loop's
 * shape). CPU twins in sim-kernels.cpp; host side in src/counter.cpp. */
#include "common.cuh"

/* p[i] = wl_pattern(seed, base + i) */
extern "C" __global__ void wl_counter_fill(uint64_t *p, uint64_t n, uint64_t seed, uint64_t base) {
  WL_GRID_STRIDE(i, n) p[i] = wl_pattern(seed, base + i);
}

/* out[0] += words that differ from the pattern; out[1] += digest of the words (positions base + i). */
extern "C" __global__ void wl_counter_verify(const uint64_t *p, uint64_t n, uint64_t seed, uint64_t base,
                                             unsigned long long *out) {
  uint64_t bad = 0, sum = 0;
  WL_GRID_STRIDE(i, n) {
    uint64_t v = p[i];
    bad += v != wl_pattern(seed, base + i);
    sum += wl_digest_term(v, base + i);
  }
  wl_warp_add(out, bad);
  wl_warp_add(out + 1, sum);
}

/* hot[i] = wl_lcg_step(hot[i], step, i) */
extern "C" __global__ void wl_counter_step(uint64_t *hot, uint64_t n, uint64_t step) {
  WL_GRID_STRIDE(i, n) hot[i] = wl_lcg_step(hot[i], step, i);
}
