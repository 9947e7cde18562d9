// The CPU reference of the chunk hash against the shared vectors, plus the properties the design relies
// on: content-only (no address dependence), position-sensitive, pointer-word counting.
#include <vector>

#include "check.h"
#include "chunk-hash.h"
#include "vectors.h"

int main(int argc, char** argv) {
  if (argc < 2) { std::printf("usage: hash-ref-test hash-vectors.txt [--print]\n"); return 2; }
  auto vs = load_vectors(argv[1]);
  CHECK(vs.size() >= 6);
  bool print = argc > 2 && !std::strcmp(argv[2], "--print");
  for (auto& hv : vs) {
    std::vector<uint64_t> w(hv.words);
    fill_vector(hv, w.data());
    uint64_t h = phos_chunk_hash_ref(w.data(), hv.words, 0, 0, nullptr);
    if (print) std::printf("%s %s %llu %llx %016llx\n", hv.name.c_str(), hv.gen.c_str(), (unsigned long long)hv.words,
                           (unsigned long long)hv.seed, (unsigned long long)h);
    else if (h != hv.expected) std::printf("vector %s: got %016llx\n", hv.name.c_str(), (unsigned long long)h);
    CHECK(print || h == hv.expected);
  }
  // Swapping two different words changes the digest; equal content at another address does not.
  std::vector<uint64_t> a(4096), b;
  for (size_t i = 0; i < a.size(); ++i) a[i] = i * 7 + 1;
  b = a;
  std::swap(b[10], b[11]);
  CHECK(phos_chunk_hash_ref(a.data(), a.size(), 0, 0, nullptr) != phos_chunk_hash_ref(b.data(), b.size(), 0, 0, nullptr));
  std::vector<uint64_t> c(a);
  CHECK(phos_chunk_hash_ref(a.data(), a.size(), 0, 0, nullptr) == phos_chunk_hash_ref(c.data(), c.size(), 0, 0, nullptr));
  // Pointer words: values in [lo, hi).
  uint32_t n = 0;
  a[0] = 0x600000000000ull;
  a[1] = 0x600000000000ull + 4096;
  a[2] = 0x600000000000ull - 1;
  phos_chunk_hash_ref(a.data(), a.size(), 0x600000000000ull, 0x610000000000ull, &n);
  CHECK(n == 2);
  return phos_test::finish("hash-ref-test");
}
