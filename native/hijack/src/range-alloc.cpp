// First-fit with coalescing over an ordered map of free ranges. Boring on purpose: allocation is not on
// any hot path (cuMemAlloc / cuMemAddressReserve), and the map keeps frees O(log n).
#include "range-alloc.h"

namespace phos::hijack {

void RangeAlloc::reset(uint64_t size) {
  free_.clear();
  size_ = size;
  free_bytes_ = size;
  if (size) free_.emplace(0, size);
}

uint64_t RangeAlloc::alloc(uint64_t len, uint64_t align, uint64_t boundary) {
  if (len == 0 || align == 0 || (align & (align - 1))) return kFail;
  if (boundary && (len > boundary || (boundary & (boundary - 1)))) return kFail;
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    uint64_t start = it->first, end = it->first + it->second;
    uint64_t a = (start + align - 1) & ~(align - 1);
    if (a < start) continue;  // overflow
    if (boundary && (a / boundary) != ((a + len - 1) / boundary)) a = (a + boundary - 1) & ~(boundary - 1);
    if (a + len < a || a + len > end) continue;
    // Split [start, end) into [start, a) [a, a+len) [a+len, end).
    uint64_t tail = end - (a + len);
    if (a > start) it->second = a - start;
    else free_.erase(it);
    if (tail) free_.emplace(a + len, tail);
    free_bytes_ -= len;
    return a;
  }
  return kFail;
}

bool RangeAlloc::free(uint64_t off, uint64_t len) {
  if (len == 0 || off + len < off || off + len > size_) return false;
  auto next = free_.lower_bound(off);
  if (next != free_.end() && next->first < off + len) return false;  // overlaps a free range
  auto prev = next;
  bool has_prev = next != free_.begin();
  if (has_prev) {
    --prev;
    if (prev->first + prev->second > off) return false;
  }
  uint64_t start = off, end = off + len;
  if (has_prev && prev->first + prev->second == off) {
    start = prev->first;
    free_.erase(prev);
  }
  if (next != free_.end() && next->first == end) {
    end = next->first + next->second;
    free_.erase(next);
  }
  free_.emplace(start, end - start);
  free_bytes_ += len;
  return true;
}

uint64_t RangeAlloc::largest_free() const {
  uint64_t m = 0;
  for (auto& [o, l] : free_)
    if (l > m) m = l;
  return m;
}

}  // namespace phos::hijack
