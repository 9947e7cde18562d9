/* Integer mixing shared by the CUDA kernels (kernels/<name>.cu), their CPU twins (sim-kernels.cpp) and the
 * host programs' pure-CPU models (src/<name>.cpp). Integer arithmetic only, so every implementation computes
 * the same bits and final checksums agree between cudasim and a real GPU. */
#ifndef PHOS_WORKLOADS_MIX_H
#define PHOS_WORKLOADS_MIX_H

#include <stdint.h>

#ifdef __CUDACC__
#define WL_FN __host__ __device__ __forceinline__
#else
#define WL_FN static inline
#endif

/* Weyl increment (2^64 / golden ratio) and Knuth's MMIX LCG constants. */
#define WL_GOLDEN 0x9E3779B97F4A7C15ull
#define WL_LCG_MUL 6364136223846793005ull
#define WL_LCG_ADD 1442695040888963407ull

/* splitmix64's finalizer: a bijection on 64-bit words with full avalanche. */
WL_FN uint64_t wl_mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

/* The fill pattern: word i of a buffer seeded with `seed`. */
WL_FN uint64_t wl_pattern(uint64_t seed, uint64_t i) { return wl_mix64(seed ^ (i * WL_GOLDEN)); }

/* One word's contribution to a digest: position-sensitive, so a digest (the wrapping sum of the terms
 * over a range) changes when words move, not only when they change. The sum is order-independent,
 * which lets GPU threads, CPU blocks and the host model add terms in any order. */
WL_FN uint64_t wl_digest_term(uint64_t v, uint64_t i) { return wl_mix64(v ^ ((i + 1) * WL_GOLDEN)); }

/* The hot-buffer update of `counter` and `vmm-grow`: an LCG step per word, keyed by the step. */
WL_FN uint64_t wl_lcg_step(uint64_t v, uint64_t step, uint64_t i) {
  return v * WL_LCG_MUL + (WL_LCG_ADD ^ step ^ (i << 20));
}

#endif
