// Contexts: one primary context per device plus cuCtxCreate'd ones. Memory belongs to a device (not
// scoped per context); a context carries its device and the peer contexts it enabled access to.
#pragma once

#include <vector>

#include "internal.h"

struct CUctx_st {
  phos::cudasim::Magic magic = phos::cudasim::Magic::context;
  CUdevice device = 0;
  unsigned flags = 0;
  bool primary = false;
  int refs = 0;         // primary: retain count
  unsigned long long id = 0;
  std::vector<CUcontext> peers;  // cuCtxEnablePeerAccess'ed from this one (under the context mutex)
  // cuCtxSetLimit's settable limits, with the real driver's defaults (an H200's, driver 580).
  size_t stack_bytes = 1024, printf_fifo_bytes = 1 << 20, malloc_heap_bytes = 8 << 20;
  size_t sync_depth = 2, pending_launches = 2048, l2_fetch_bytes = 64, l2_persisting_bytes = 0;
};

namespace phos::cudasim {

CUcontext current_context();  // top of the calling thread's stack, or nullptr
CUcontext primary_context(CUdevice dev = 0);  // the device's primary context (created on demand)
CUdevice current_device();    // the current context's device, or 0 without one
// True when `from` may touch memory owned by `owner`: same device, or peer access enabled from
// `from` to a context of `owner`.
bool peer_enabled(CUcontext from, CUdevice owner);

}  // namespace phos::cudasim
