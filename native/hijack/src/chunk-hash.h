/* The per-chunk hash, defined once for the GPU kernel (kernels/chunk-hash.cu), the cudasim plugin
 * (sim-kernels.cpp) and the tests. Definition, for a chunk of n 8-byte little-endian words w[0..n):
 *
 *   fmix64(k)     = Murmur3 64-bit finaliser
 *   key(i)        = (i + 1) * 0x9E3779B97F4A7C15                      (mod 2^64)
 *   h             = fmix64( (sum over i of fmix64(w[i] ^ key(i))) ^ (n * 0xD6E8FEB86659FD93) )
 *
 * The sum is mod 2^64, so it is independent of reduction order: any split over threads, warps and
 * blocks gives the same bits. The hash depends on content and position within the chunk only, never on
 * the chunk's address (content addressing for image dedup). Chunk sizes are multiples of 16 bytes.
 * Alongside, the kernel counts words w with lo <= w < hi (pointers into the region). */
#ifndef PHOS_HIJACK_CHUNK_HASH_H
#define PHOS_HIJACK_CHUNK_HASH_H

#include <stdint.h>

#ifdef __CUDACC__
#define PHOS_HD __host__ __device__ __forceinline__
#else
#define PHOS_HD static inline
#endif

PHOS_HD uint64_t phos_fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

PHOS_HD uint64_t phos_word_mix(uint64_t w, uint64_t i) { return phos_fmix64(w ^ ((i + 1) * 0x9E3779B97F4A7C15ULL)); }

PHOS_HD uint64_t phos_hash_final(uint64_t sum, uint64_t nwords) { return phos_fmix64(sum ^ (nwords * 0xD6E8FEB86659FD93ULL)); }

/* CPU reference: the hash of nwords words at p, and (optionally) how many lie in [lo, hi). */
PHOS_HD uint64_t phos_chunk_hash_ref(const uint64_t* p, uint64_t nwords, uint64_t lo, uint64_t hi, uint32_t* ptrwords) {
  uint64_t sum = 0;
  uint32_t cnt = 0;
  for (uint64_t i = 0; i < nwords; ++i) {
    sum += phos_word_mix(p[i], i);
    cnt += (p[i] - lo) < (hi - lo) ? 1u : 0u;
  }
  if (ptrwords) *ptrwords = cnt;
  return phos_hash_final(sum, nwords);
}

/* Kernel entry names and launch shape (the PTX entries and the cudasim plugin use the same). */
#define PHOS_CHUNK_HASH_ENTRY "phos_chunk_hash"
#define PHOS_CHUNK_COMPARE_ENTRY "phos_chunk_compare"
#define PHOS_CHUNK_HASH_THREADS 256
#define PHOS_CHUNK_COMPARE_THREADS 256

#endif
