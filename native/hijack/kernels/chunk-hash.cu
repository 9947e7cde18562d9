// GPU helper kernels for hash rounds: one block per chunk hashes it (chunk-hash.h defines the function)
// and counts region pointers; a second kernel compares digests with the previous round and keeps only a
// byte per chunk to copy back. Compiled to PTX at build (--ptx -arch=compute_90) and embedded in libphos.
#include "chunk-hash.h"

// Block b hashes the chunk at base + idx[b] * chunk_bytes; digest -> hashes[idx[b]], count -> ptrwords[b].
extern "C" __global__ void __launch_bounds__(PHOS_CHUNK_HASH_THREADS)
phos_chunk_hash(unsigned long long base, const unsigned int* idx, unsigned int n, unsigned long long chunk_bytes,
                unsigned long long lo, unsigned long long hi, unsigned long long* hashes, unsigned int* ptrwords) {
  __shared__ unsigned long long s_sum[PHOS_CHUNK_HASH_THREADS / 32];
  __shared__ unsigned int s_cnt[PHOS_CHUNK_HASH_THREADS / 32];
  unsigned int b = blockIdx.x;
  if (b >= n) return;
  const ulonglong2* p = reinterpret_cast<const ulonglong2*>(base + (unsigned long long)idx[b] * chunk_bytes);
  unsigned long long pairs = chunk_bytes / 16;
  unsigned long long sum = 0;
  unsigned int cnt = 0;
  unsigned long long span = hi - lo;
  for (unsigned long long j = threadIdx.x; j < pairs; j += blockDim.x) {
    ulonglong2 v = p[j];
    sum += phos_word_mix(v.x, 2 * j) + phos_word_mix(v.y, 2 * j + 1);
    cnt += ((v.x - lo) < span) + ((v.y - lo) < span);
  }
  for (int o = 16; o > 0; o >>= 1) {
    sum += __shfl_down_sync(0xffffffffu, sum, o);
    cnt += __shfl_down_sync(0xffffffffu, cnt, o);
  }
  unsigned int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) { s_sum[warp] = sum; s_cnt[warp] = cnt; }
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned long long t = 0;
    unsigned int c = 0;
    for (unsigned int w = 0; w < blockDim.x / 32; ++w) { t += s_sum[w]; c += s_cnt[w]; }
    hashes[idx[b]] = phos_hash_final(t, chunk_bytes / 8);
    ptrwords[b] = c;
  }
}

// changed[k] = hashes[idx[k]] != prev[idx[k]]; prev[idx[k]] = hashes[idx[k]].
extern "C" __global__ void __launch_bounds__(PHOS_CHUNK_COMPARE_THREADS)
phos_chunk_compare(const unsigned int* idx, unsigned int n, const unsigned long long* hashes,
                   unsigned long long* prev, unsigned char* changed) {
  unsigned int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= n) return;
  unsigned int c = idx[k];
  unsigned long long h = hashes[c];
  changed[k] = h != prev[c];
  prev[c] = h;
}
