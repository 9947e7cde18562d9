// Once-only process init. The constructor only reads options and enables logging (no allocation, no
// driver): libphos may be loaded into programs that never touch CUDA, and those must not notice it.
#include "init.h"

#include <atomic>

#include "agent-link.h"
#include "driver.h"
#include "launch-track.h"
#include "log.h"
#include "options.h"

namespace phos::hijack {
namespace {
std::atomic<bool> g_inited{false};
}

void runtime_init() {
  if (g_inited.load(std::memory_order_acquire)) return;
  if (g_inited.exchange(true, std::memory_order_acq_rel)) return;
  const Options& o = options();
  log_init(o.log_level);
  options_log();
  if (o.arm && !o.disabled) track_arm(true);
}

CUresult driver_init(unsigned int flags) {
  runtime_init();
  CUresult r = PHOS_REAL(cuInit, flags);
  if (r == CUDA_SUCCESS) agent_start();
  return r;
}

}  // namespace phos::hijack

__attribute__((constructor)) static void phos_hijack_ctor() { phos::hijack::runtime_init(); }
