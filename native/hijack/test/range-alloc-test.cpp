// RangeAlloc: first fit, alignment, the no-crossing boundary for small allocations, coalescing, double
// frees refused, and a randomized check against a byte map.
#include <algorithm>
#include <map>
#include <vector>

#include "check.h"
#include "range-alloc.h"

using phos::hijack::RangeAlloc;
constexpr uint64_t M2 = 2ull << 20;

int main() {
  RangeAlloc a(64ull << 20);
  uint64_t x = a.alloc(100, 256);
  CHECK(x == 0);
  uint64_t y = a.alloc(100, 256);
  CHECK(y == 256);
  uint64_t big = a.alloc(4 * M2, M2);
  CHECK(big == M2);  // aligned past the small ones
  CHECK(a.used_bytes() == 200 + 4 * M2);
  // Small allocations never cross a 2 MiB boundary.
  uint64_t z = a.alloc(M2 - 512, 256, M2);  // does not fit in [512, 2M): moves to the next free 2M
  CHECK(z != RangeAlloc::kFail && z / M2 == (z + M2 - 512 - 1) / M2);
  CHECK(a.alloc(M2 + 1, 256, M2) == RangeAlloc::kFail);  // larger than the boundary
  CHECK(a.alloc(0, 256) == RangeAlloc::kFail);
  CHECK(a.alloc(16, 3) == RangeAlloc::kFail);
  // Frees coalesce; double frees and out-of-range frees are refused.
  CHECK(a.free(x, 100));
  CHECK(!a.free(x, 100));
  CHECK(!a.free(64ull << 20, 1));
  CHECK(a.free(y, 100));
  CHECK(a.free(big, 4 * M2));
  CHECK(a.free(z, M2 - 512));
  CHECK(a.free_bytes() == a.size() && a.free_ranges() == 1 && a.largest_free() == a.size());
  CHECK(a.alloc(64ull << 20, M2) == 0);
  CHECK(a.alloc(1, 1) == RangeAlloc::kFail);

  // Randomized: allocations never overlap, stay in bounds and aligned; freeing all restores one range.
  RangeAlloc r(8ull << 20);
  std::map<uint64_t, uint64_t> live;
  std::vector<uint8_t> used(8ull << 20, 0);
  uint64_t s = 7;
  auto rnd = [&] { s = s * 6364136223846793005ull + 1442695040888963407ull; return s >> 33; };
  bool ok = true;
  for (int i = 0; i < 20000; ++i) {
    if (live.empty() || rnd() % 3) {
      bool small = rnd() % 4;
      uint64_t len = small ? 1 + rnd() % 70000 : M2 * (1 + rnd() % 2);
      uint64_t align = small ? 256 : M2;
      uint64_t off = r.alloc(len, align, small ? M2 : 0);
      if (off == RangeAlloc::kFail) continue;
      if (off % align || off + len > r.size() || (small && off / M2 != (off + len - 1) / M2)) ok = false;
      for (uint64_t b = off; b < off + len; b += 64) if (used[b]) ok = false;
      for (uint64_t b = off; b < off + len; b += 64) used[b] = 1;
      live[off] = len;
    } else {
      auto it = live.begin();
      std::advance(it, rnd() % live.size());
      for (uint64_t b = it->first; b < it->first + it->second; b += 64) used[b] = 0;
      if (!r.free(it->first, it->second)) ok = false;
      live.erase(it);
    }
  }
  CHECK(ok);
  for (auto& [o, l] : live) CHECK(r.free(o, l));
  CHECK(r.free_ranges() == 1 && r.free_bytes() == r.size());
  return phos_test::finish("range-alloc-test");
}
