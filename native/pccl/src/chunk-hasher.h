// Incremental form of libphos's per-chunk 64-bit hash. The definition lives in native/hijack (one
// definition for the GPU kernel, cudasim and here); this only feeds it bytes in pieces, so a chunk can be
// hashed while it streams through a staging buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "../../hijack/src/chunk-hash.h"

namespace phos::pccl {

// Sum over i in [0, nwords) of phos_word_mix(word i at p, first + i): the hash's bulk, in a wide-vector
// form where the CPU has one (chunk-hasher.cpp); same bits as the scalar loop.
uint64_t mix_sum(const uint8_t* p, uint64_t nwords, uint64_t first);

// Words are 8-byte little-endian, indexed from the chunk's start. A length that is not a multiple of 8
// hashes as if zero-padded to the next word (libphos's chunks are multiples of 16, where the two agree).
class ChunkHasher {
 public:
  void update(const uint8_t* p, size_t n) {
    if (tail_len_) {
      size_t take = std::min(n, size_t{8} - tail_len_);
      std::memcpy(tail_ + tail_len_, p, take);
      tail_len_ += take;
      p += take;
      n -= take;
      if (tail_len_ < 8) return;
      add_word(tail_);
      tail_len_ = 0;
    }
    if (n >= 8) {
      const uint64_t words = n / 8;
      sum_ += mix_sum(p, words, words_);
      words_ += words;
      p += words * 8;
      n -= words * 8;
    }
    if (n) {
      std::memcpy(tail_, p, n);
      tail_len_ = n;
    }
  }

  uint64_t digest() const {
    uint64_t sum = sum_, words = words_;
    if (tail_len_) {
      uint8_t w[8] = {};
      std::memcpy(w, tail_, tail_len_);
      uint64_t v;
      std::memcpy(&v, w, 8);
      sum += phos_word_mix(v, words++);
    }
    return phos_hash_final(sum, words);
  }

 private:
  void add_word(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);  // x86-64 / aarch64: little-endian, as the kernel reads it
    sum_ += phos_word_mix(v, words_++);
  }

  uint64_t sum_ = 0;
  uint64_t words_ = 0;
  uint8_t tail_[8] = {};
  size_t tail_len_ = 0;
};

// The same hash split by position instead of by order: piece_sum() of any piece that starts at a word
// boundary of its chunk (byte offset `at`), added up over the chunk's pieces in any order or on any
// thread, then chunk_digest() with the chunk's length, equals ChunkHasher fed the whole chunk. Only the
// chunk's last piece may have a length that is not a multiple of 8 (zero-padded, as above).
inline uint64_t piece_sum(const uint8_t* p, size_t n, uint64_t at) {
  const uint64_t first = at / 8, words = n / 8;
  uint64_t sum = words ? mix_sum(p, words, first) : 0;
  if (const size_t tail = n % 8) {
    uint64_t v = 0;
    std::memcpy(&v, p + words * 8, tail);  // little-endian: the missing high bytes are the zero padding
    sum += phos_word_mix(v, first + words);
  }
  return sum;
}

inline uint64_t chunk_digest(uint64_t sum, uint64_t len) { return phos_hash_final(sum, (len + 7) / 8); }

// 16 lower-case hex digits, the manifest's form.
inline std::string hash_hex(uint64_t h) {
  static const char* digits = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) s[i] = digits[h & 15];
  return s;
}

}  // namespace phos::pccl
