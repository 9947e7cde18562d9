// Contexts: one primary context per device plus cuCtxCreate'd ones; all share the process's single
// simulated device (memory and streams are not scoped per context).
#pragma once

#include "internal.h"

struct CUctx_st {
  phos::cudasim::Magic magic = phos::cudasim::Magic::context;
  CUdevice device = 0;
  unsigned flags = 0;
  bool primary = false;
  int refs = 0;         // primary: retain count
  unsigned long long id = 0;
};

namespace phos::cudasim {

CUcontext current_context();  // top of the calling thread's stack, or nullptr
CUcontext primary_context();  // the device's primary context (exists after cuInit)

}  // namespace phos::cudasim
