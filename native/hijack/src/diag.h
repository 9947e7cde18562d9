// Diagnostics behind the phos_hijack_* exports (include/phos/hijack.h).
#pragma once
#include <atomic>
#include <cstdint>

#include <phos/hijack.h>

namespace phos::hijack {

int get_stats(phos_hijack_stats* out);
int arm(int on);
int run_hash_round(uint32_t* changed, uint32_t cap, uint32_t* n);

/// Cumulative VMM counters (never decremented; vmm.cpp counts) for the exit-time stats line that
/// PHOS_STATS=1 prints (test/gpu/libphos.sh reads it).
struct VmmTotals {
  std::atomic<uint64_t> served_allocs{0};         ///< cuMemAlloc* answered from the region's slabs
  std::atomic<uint64_t> served_bytes{0};          ///< their requested bytes
  std::atomic<uint64_t> slab_peak_bytes{0};       ///< most slab bytes alive at once
  std::atomic<uint64_t> app_region_map_bytes{0};  ///< the app's own cuMemMap bytes inside the region
  std::atomic<uint64_t> passthrough_bytes{0};     ///< bytes the driver served directly (not droppable)
};
extern VmmTotals g_vmm_totals;

}  // namespace phos::hijack
