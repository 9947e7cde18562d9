// Fills the public stats struct from the concept files' counters and accounting.
#include "diag.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "agent-link.h"
#include "hash-round.h"
#include "interpose.h"
#include "launch-track.h"
#include "options.h"
#include "vmm.h"

namespace phos::hijack {

VmmTotals g_vmm_totals;

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

namespace {

// PHOS_STATS=1: one line on stderr at exit with the counters the H200 acceptance script reports
// (test/gpu/libphos.sh parses it). Reads atomics and plain counters only, never the driver: libcuda may
// be torn down by the time libphos's destructors run (libphos is preloaded, so it is finalised last).
__attribute__((destructor)) void stats_at_exit() {
  const char* env = getenv("PHOS_STATS");
  if (!env || strcmp(env, "1") != 0) return;
  RegionInfo reg{};
  bool region = vmm_region(&reg);
  char buf[1024];
  int n = snprintf(buf, sizeof buf,
                   "phos-stats pid=%d disabled=%d armed=%d proc_queries=%llu proc_wrapped=%llu dlsym_wrapped=%llu "
                   "launches_tracked=%llu launches_widened=%llu param_pointers=%llu region_ok=%d va_base=0x%llx "
                   "va_size=0x%llx served_allocs=%llu served_bytes=%llu slab_peak_bytes=%llu "
                   "app_region_map_bytes=%llu passthrough_bytes=%llu\n",
                   static_cast<int>(getpid()), options().disabled ? 1 : 0, g_track_armed.load() ? 1 : 0,
                   (unsigned long long)g_interpose_stats.proc_queries.load(),
                   (unsigned long long)g_interpose_stats.proc_wrapped.load(),
                   (unsigned long long)g_interpose_stats.dlsym_wrapped.load(),
                   (unsigned long long)g_track_stats.launches.load(),
                   (unsigned long long)g_track_stats.widened.load(),
                   (unsigned long long)g_track_stats.pointers.load(), region ? 1 : 0,
                   (unsigned long long)reg.base, (unsigned long long)reg.size,
                   (unsigned long long)g_vmm_totals.served_allocs.load(),
                   (unsigned long long)g_vmm_totals.served_bytes.load(),
                   (unsigned long long)g_vmm_totals.slab_peak_bytes.load(),
                   (unsigned long long)g_vmm_totals.app_region_map_bytes.load(),
                   (unsigned long long)g_vmm_totals.passthrough_bytes.load());
  if (n > 0) {
    ssize_t w = write(STDERR_FILENO, buf, std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
    (void)w;
  }
}

}  // namespace

}  // namespace phos::hijack
