// RangeAlloc: first-fit allocator of offsets in [0, size) with coalescing frees. Used for the region's
// virtual addresses (slabs and the app's own reservations) and for sub-allocation inside each slab.
// Pure bookkeeping: no CUDA, no locking (callers hold the VMM lock).
#pragma once
#include <cstdint>
#include <cstddef>
#include <map>

namespace phos::hijack {

class RangeAlloc {
 public:
  static constexpr uint64_t kFail = ~0ull;

  RangeAlloc() = default;
  explicit RangeAlloc(uint64_t size) { reset(size); }

  /// Forgets everything; [0, size) becomes one free range.
  void reset(uint64_t size);

  /// First fit. pre: align is a power of two, len > 0. If `boundary` is non-zero (a power of two), the
  /// returned range never crosses a multiple of it (pre: len <= boundary). Returns kFail when nothing fits.
  uint64_t alloc(uint64_t len, uint64_t align, uint64_t boundary = 0);

  /// Returns [off, off+len) to the free set, merging with neighbours. pre: the range was allocated.
  /// Returns false (and changes nothing) if any part of it is already free or out of bounds.
  bool free(uint64_t off, uint64_t len);

  uint64_t size() const { return size_; }
  uint64_t free_bytes() const { return free_bytes_; }
  uint64_t used_bytes() const { return size_ - free_bytes_; }
  size_t free_ranges() const { return free_.size(); }
  /// Largest free range (linear; for tests and status).
  uint64_t largest_free() const;

 private:
  std::map<uint64_t, uint64_t> free_;  // offset -> length, disjoint and never adjacent
  uint64_t size_ = 0;
  uint64_t free_bytes_ = 0;
};

}  // namespace phos::hijack
