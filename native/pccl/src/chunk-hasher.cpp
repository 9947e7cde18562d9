// See chunk-hasher.h. The chunk hash is a sum of independent per-word mixes, so eight words go through
// one AVX-512 lane each (vpmullq does the 64-bit multiplies): about 3x the scalar loop in a one-off
// microbenchmark on the 2-core EPYC VM. The transport hashes every byte it sends and receives: this is
// on its critical path.
#include "chunk-hasher.h"

#if defined(__x86_64__)
// GCC 12's AVX-512 headers trip -Wuninitialized on their own _mm512_undefined_* (a self-initialising
// idiom); this file holds nothing else the warning could catch.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

namespace phos::pccl {

namespace {

uint64_t mix_sum_scalar(const uint8_t* p, uint64_t nwords, uint64_t first) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < nwords; ++i) {
    uint64_t v;
    std::memcpy(&v, p + 8 * i, 8);  // x86-64 / aarch64: little-endian, as the kernel reads it
    sum += phos_word_mix(v, first + i);
  }
  return sum;
}

#if defined(__x86_64__)
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;  // key(i) = (i + 1) * kGolden, as in chunk-hash.h

__attribute__((target("avx512f,avx512dq"))) __m512i fmix8(__m512i x) {
  x = _mm512_xor_si512(x, _mm512_srli_epi64(x, 33));
  x = _mm512_mullo_epi64(x, _mm512_set1_epi64(static_cast<int64_t>(0xff51afd7ed558ccdULL)));
  x = _mm512_xor_si512(x, _mm512_srli_epi64(x, 33));
  x = _mm512_mullo_epi64(x, _mm512_set1_epi64(static_cast<int64_t>(0xc4ceb9fe1a85ec53ULL)));
  return _mm512_xor_si512(x, _mm512_srli_epi64(x, 33));
}

// Two 8-word lanes per iteration (two independent multiply chains); keys advance by addition:
// key(i + 16) = key(i) + 16 * kGolden (mod 2^64).
__attribute__((target("avx512f,avx512dq"))) uint64_t mix_sum_avx512(const uint8_t* p, uint64_t nwords, uint64_t first) {
  const __m512i lane = _mm512_setr_epi64(1, 2, 3, 4, 5, 6, 7, 8);
  __m512i k0 = _mm512_mullo_epi64(_mm512_add_epi64(_mm512_set1_epi64(static_cast<int64_t>(first)), lane),
                                  _mm512_set1_epi64(static_cast<int64_t>(kGolden)));
  __m512i k1 = _mm512_add_epi64(k0, _mm512_set1_epi64(static_cast<int64_t>(8 * kGolden)));
  const __m512i step = _mm512_set1_epi64(static_cast<int64_t>(16 * kGolden));
  __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
  uint64_t i = 0;
  for (; i + 16 <= nwords; i += 16) {
    const __m512i w0 = _mm512_loadu_si512(p + 8 * i), w1 = _mm512_loadu_si512(p + 8 * i + 64);
    a0 = _mm512_add_epi64(a0, fmix8(_mm512_xor_si512(w0, k0)));
    a1 = _mm512_add_epi64(a1, fmix8(_mm512_xor_si512(w1, k1)));
    k0 = _mm512_add_epi64(k0, step);
    k1 = _mm512_add_epi64(k1, step);
  }
  uint64_t sum = static_cast<uint64_t>(_mm512_reduce_add_epi64(_mm512_add_epi64(a0, a1)));
  return sum + mix_sum_scalar(p + 8 * i, nwords - i, first + i);
}

const bool kHaveAvx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#endif

}  // namespace

uint64_t mix_sum(const uint8_t* p, uint64_t nwords, uint64_t first) {
#if defined(__x86_64__)
  if (kHaveAvx512 && nwords >= 16) return mix_sum_avx512(p, nwords, first);
#endif
  return mix_sum_scalar(p, nwords, first);
}

}  // namespace phos::pccl
