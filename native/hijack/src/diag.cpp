// Fills the public stats struct from the concept files' counters and accounting.
#include "diag.h"

#include <algorithm>
#include <cstring>

#include "agent-link.h"
#include "hash-round.h"
#include "interpose.h"
#include "launch-track.h"
#include "vmm.h"

namespace phos::hijack {

int get_stats(phos_hijack_stats* out) {
  if (!out || out->size < sizeof(uint32_t)) return CUDA_ERROR_INVALID_VALUE;
  phos_hijack_stats s{};
  s.size = std::min<uint32_t>(out->size, sizeof s);
  Accounting a;
  int r = vmm_accounting(&a);
  RegionInfo reg{};
  s.region_ok = vmm_region(&reg) ? 1 : 0;
  s.va_base = reg.base;
  s.va_size = reg.size;
  s.proc_queries = g_interpose_stats.proc_queries.load();
  s.proc_wrapped = g_interpose_stats.proc_wrapped.load();
  s.dlsym_wrapped = g_interpose_stats.dlsym_wrapped.load();
  s.launches_tracked = g_track_stats.launches.load();
  s.launches_widened = g_track_stats.widened.load();
  s.slab_bytes = a.slab_bytes;
  s.alloc_bytes = a.alloc_bytes;
  s.app_handle_bytes = a.app_handle_bytes;
  s.passthrough_bytes = a.passthrough_bytes;
  s.internal_bytes = a.internal_bytes;
  s.driver_used_bytes = a.driver_used_bytes;
  s.baseline_used_bytes = a.baseline_used_bytes;
  s.unexplained_bytes = a.unexplained_bytes;
  s.slabs = a.slabs;
  s.allocations = a.allocations;
  s.chunks_present = chunks_present();
  s.agent_connected = agent_connected() ? 1 : 0;
  memcpy(out, &s, s.size);
  return r;
}

int arm(int on) {
  bool prev = g_track_armed.load();
  track_arm(on != 0);
  return prev ? 1 : 0;
}

int run_hash_round(uint32_t* changed, uint32_t cap, uint32_t* n) {
  HashRoundResult hr;
  bool ok = hash_round(&hr);
  if (n) *n = static_cast<uint32_t>(hr.changed.size());
  for (uint32_t i = 0; i < cap && i < hr.changed.size(); ++i) changed[i] = hr.changed[i];
  return ok ? 0 : (hr.err ? static_cast<int>(hr.err) : CUDA_ERROR_UNKNOWN);
}

}  // namespace phos::hijack
