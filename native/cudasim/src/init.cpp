// cuInit and cuDriverGetVersion. Init runs once: device VA region, kernel plugins, and the
// checkpoint helper ("restore") thread.
#include <atomic>
#include <mutex>

#include "arena.h"
#include "checkpoint.h"
#include "kernels.h"
#include "log.h"

namespace phos::cudasim {
namespace {

std::atomic<bool> g_initialized{false};
std::once_flag g_init_once;

void init_once() {
  init_devices();
  {
    arena::State &s = arena::state();
    std::lock_guard lk(s.m);
    arena::init_region();
  }
  kernels::load_plugins();
  checkpoint::start_helper();
  g_initialized.store(true);
}

}  // namespace

bool initialized() { return g_initialized.load(std::memory_order_acquire); }

CUresult require_init() { return initialized() ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED; }

}  // namespace phos::cudasim

using namespace phos::cudasim;

CUresult cuInit(unsigned int Flags) {
  if (Flags != 0) return CUDA_ERROR_INVALID_VALUE;
  CUSIM_API_ENTER();
  std::call_once(g_init_once, init_once);
  return device_count() > 0 ? CUDA_SUCCESS : CUDA_ERROR_NO_DEVICE;
}

CUresult cuDriverGetVersion(int *driverVersion) {
  if (!driverVersion) return CUDA_ERROR_INVALID_VALUE;
  *driverVersion = 13000;
  return CUDA_SUCCESS;
}
