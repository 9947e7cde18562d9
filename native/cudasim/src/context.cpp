// Context API: primary-context retain/release, the per-thread context stack, cuCtxCreate/Destroy,
// cuCtxSynchronize and the context queries the runtime makes at start-up.
#include "context.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "stream.h"

namespace phos::cudasim {
namespace {

std::mutex &g_ctx_mutex = *new std::mutex;  // leaked: used during exit
CUctx_st *g_primary[kMaxGpus] = {};
std::atomic<unsigned long long> g_next_ctx_id{1};
thread_local std::vector<CUcontext> t_stack;

CUctx_st *make_ctx(CUdevice dev, unsigned flags, bool primary) {
  auto *c = new CUctx_st;
  c->device = dev;
  c->flags = flags;
  c->primary = primary;
  c->id = g_next_ctx_id++;
  return c;
}

bool valid_ctx(CUcontext c) { return has_magic(c, Magic::context); }

CUresult check_device(CUdevice dev) {
  if (CUresult r = require_init()) return r;
  return valid_device(dev) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

}  // namespace

CUcontext primary_context(CUdevice dev) {
  if (dev < 0 || dev >= kMaxGpus) dev = 0;
  std::lock_guard lk(g_ctx_mutex);
  if (!g_primary[dev]) g_primary[dev] = make_ctx(dev, 0, true);
  return g_primary[dev];
}

CUdevice current_device() {
  CUcontext c = current_context();
  return c ? c->device : 0;
}

bool peer_enabled(CUcontext from, CUdevice owner) {
  if (!from || from->device == owner) return true;
  std::lock_guard lk(g_ctx_mutex);
  for (CUcontext p : from->peers)
    if (valid_ctx(p) && p->device == owner) return true;
  return false;
}

CUcontext current_context() { return t_stack.empty() ? nullptr : t_stack.back(); }

CUresult require_context() {
  if (CUresult r = require_init()) return r;
  return current_context() ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
}

}  // namespace phos::cudasim

using namespace phos::cudasim;

CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev) {
  CUSIM_API_ENTER();
  if (CUresult r = check_device(dev)) return r;
  if (!pctx) return CUDA_ERROR_INVALID_VALUE;
  CUcontext c = primary_context(dev);
  std::lock_guard lk(g_ctx_mutex);
  c->refs++;
  *pctx = c;
  return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
  CUSIM_API_ENTER();
  if (CUresult r = check_device(dev)) return r;
  CUcontext c = primary_context(dev);
  std::lock_guard lk(g_ctx_mutex);
  if (c->refs == 0) return CUDA_ERROR_INVALID_CONTEXT;
  c->refs--;
  return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease(CUdevice dev) { return cuDevicePrimaryCtxRelease_v2(dev); }

CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active) {
  if (CUresult r = check_device(dev)) return r;
  if (!flags || !active) return CUDA_ERROR_INVALID_VALUE;
  CUcontext c = primary_context(dev);
  std::lock_guard lk(g_ctx_mutex);
  *flags = c->flags;
  *active = c->refs > 0;
  return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags) {
  if (CUresult r = check_device(dev)) return r;
  CUcontext c = primary_context(dev);
  std::lock_guard lk(g_ctx_mutex);
  c->flags = flags;
  return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags) {
  return cuDevicePrimaryCtxSetFlags_v2(dev, flags);
}

// Reset would destroy all device state; the sim only synchronises (memory is the process's to free).
CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev) {
  CUSIM_API_ENTER();
  if (CUresult r = check_device(dev)) return r;
  return synchronize_all_streams();
}

CUresult cuDevicePrimaryCtxReset(CUdevice dev) { return cuDevicePrimaryCtxReset_v2(dev); }

CUresult cuCtxSetCurrent(CUcontext ctx) {
  if (CUresult r = require_init()) return r;
  if (ctx && !valid_ctx(ctx)) return CUDA_ERROR_INVALID_CONTEXT;
  if (t_stack.empty()) {
    if (ctx) t_stack.push_back(ctx);
  } else if (ctx) {
    t_stack.back() = ctx;
  } else {
    t_stack.pop_back();
  }
  return CUDA_SUCCESS;
}

CUresult cuCtxGetCurrent(CUcontext *pctx) {
  if (CUresult r = require_init()) return r;
  if (!pctx) return CUDA_ERROR_INVALID_VALUE;
  *pctx = current_context();
  return CUDA_SUCCESS;
}

CUresult cuCtxPushCurrent_v2(CUcontext ctx) {
  if (CUresult r = require_init()) return r;
  if (!valid_ctx(ctx)) return CUDA_ERROR_INVALID_CONTEXT;
  t_stack.push_back(ctx);
  return CUDA_SUCCESS;
}

CUresult cuCtxPopCurrent_v2(CUcontext *pctx) {
  if (CUresult r = require_init()) return r;
  if (t_stack.empty()) return CUDA_ERROR_INVALID_CONTEXT;
  if (pctx) *pctx = t_stack.back();
  t_stack.pop_back();
  return CUDA_SUCCESS;
}

CUresult cuCtxPushCurrent(CUcontext ctx) { return cuCtxPushCurrent_v2(ctx); }
CUresult cuCtxPopCurrent(CUcontext *pctx) { return cuCtxPopCurrent_v2(pctx); }

CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev) {
  CUSIM_API_ENTER();
  if (CUresult r = check_device(dev)) return r;
  if (!pctx) return CUDA_ERROR_INVALID_VALUE;
  *pctx = make_ctx(dev, flags, false);
  t_stack.push_back(*pctx);
  return CUDA_SUCCESS;
}

CUresult cuCtxCreate_v3(CUcontext *pctx, CUexecAffinityParam *, int, unsigned int flags, CUdevice dev) {
  return cuCtxCreate_v2(pctx, flags, dev);
}

CUresult cuCtxCreate_v4(CUcontext *pctx, CUctxCreateParams *, unsigned int flags, CUdevice dev) {
  return cuCtxCreate_v2(pctx, flags, dev);
}

CUresult cuCtxDestroy_v2(CUcontext ctx) {
  CUSIM_API_ENTER();
  if (CUresult r = require_init()) return r;
  if (!valid_ctx(ctx) || ctx->primary) return CUDA_ERROR_INVALID_CONTEXT;
  synchronize_all_streams();
  std::erase(t_stack, ctx);
  {
    std::lock_guard lk(g_ctx_mutex);
    ctx->peers.clear();
  }
  ctx->magic = Magic::dead;  // handle memory is kept: a stale handle must read as invalid, not crash
  return CUDA_SUCCESS;
}

CUresult cuCtxDestroy(CUcontext ctx) { return cuCtxDestroy_v2(ctx); }

CUresult cuCtxSynchronize() {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  return synchronize_all_streams();
}

CUresult cuCtxSynchronize_v2(CUcontext ctx) {
  CUSIM_API_ENTER();
  if (CUresult r = require_init()) return r;
  if (ctx && !valid_ctx(ctx)) return CUDA_ERROR_INVALID_CONTEXT;
  return synchronize_all_streams();
}

CUresult cuCtxGetDevice(CUdevice *device) {
  if (CUresult r = require_context()) return r;
  if (!device) return CUDA_ERROR_INVALID_VALUE;
  *device = current_context()->device;
  return CUDA_SUCCESS;
}

CUresult cuCtxGetDevice_v2(CUdevice *device, CUcontext ctx) {
  if (!ctx) return cuCtxGetDevice(device);
  if (CUresult r = require_init()) return r;
  if (!valid_ctx(ctx)) return CUDA_ERROR_INVALID_CONTEXT;
  if (!device) return CUDA_ERROR_INVALID_VALUE;
  *device = ctx->device;
  return CUDA_SUCCESS;
}

CUresult cuCtxGetFlags(unsigned int *flags) {
  if (CUresult r = require_context()) return r;
  if (!flags) return CUDA_ERROR_INVALID_VALUE;
  *flags = current_context()->flags;
  return CUDA_SUCCESS;
}

CUresult cuCtxSetFlags(unsigned int flags) {
  if (CUresult r = require_context()) return r;
  current_context()->flags = flags;
  return CUDA_SUCCESS;
}

CUresult cuCtxGetId(CUcontext ctx, unsigned long long *ctxId) {
  if (CUresult r = require_init()) return r;
  if (!ctx) ctx = current_context();
  if (!valid_ctx(ctx)) return CUDA_ERROR_INVALID_CONTEXT;
  if (!ctxId) return CUDA_ERROR_INVALID_VALUE;
  *ctxId = ctx->id;
  return CUDA_SUCCESS;
}

CUresult cuCtxGetApiVersion(CUcontext ctx, unsigned int *version) {
  if (CUresult r = require_init()) return r;
  if (ctx && !valid_ctx(ctx)) return CUDA_ERROR_INVALID_CONTEXT;
  if (!version) return CUDA_ERROR_INVALID_VALUE;
  *version = 3020;  // what the real driver reports for contexts created through the v2 ABI
  return CUDA_SUCCESS;
}

CUresult cuCtxGetStreamPriorityRange(int *leastPriority, int *greatestPriority) {
  if (CUresult r = require_init()) return r;
  if (leastPriority) *leastPriority = kLeastPriority;
  if (greatestPriority) *greatestPriority = kGreatestPriority;
  return CUDA_SUCCESS;
}

namespace {
// The current context's slot for a limit, or nullptr for one the driver does not have.
size_t *limit_slot(CUlimit limit) {
  CUcontext c = phos::cudasim::current_context();
  switch (limit) {
    case CU_LIMIT_STACK_SIZE: return &c->stack_bytes;
    case CU_LIMIT_PRINTF_FIFO_SIZE: return &c->printf_fifo_bytes;
    case CU_LIMIT_MALLOC_HEAP_SIZE: return &c->malloc_heap_bytes;
    case CU_LIMIT_DEV_RUNTIME_SYNC_DEPTH: return &c->sync_depth;
    case CU_LIMIT_DEV_RUNTIME_PENDING_LAUNCH_COUNT: return &c->pending_launches;
    case CU_LIMIT_MAX_L2_FETCH_GRANULARITY: return &c->l2_fetch_bytes;
    case CU_LIMIT_PERSISTING_L2_CACHE_SIZE: return &c->l2_persisting_bytes;
    default: return nullptr;
  }
}
}  // namespace

CUresult cuCtxGetLimit(size_t *pvalue, CUlimit limit) {
  if (CUresult r = require_context()) return r;
  if (!pvalue) return CUDA_ERROR_INVALID_VALUE;
  size_t *slot = limit_slot(limit);
  if (!slot) return CUDA_ERROR_UNSUPPORTED_LIMIT;
  *pvalue = *slot;
  return CUDA_SUCCESS;
}

// Values are kept as given (the real driver rounds some up; a stack of 0 reads back 0 there too).
CUresult cuCtxSetLimit(CUlimit limit, size_t value) {
  if (CUresult r = require_context()) return r;
  size_t *slot = limit_slot(limit);
  if (!slot) return CUDA_ERROR_UNSUPPORTED_LIMIT;
  *slot = value;
  return CUDA_SUCCESS;
}

CUresult cuCtxGetCacheConfig(CUfunc_cache *pconfig) {
  if (CUresult r = require_context()) return r;
  if (!pconfig) return CUDA_ERROR_INVALID_VALUE;
  *pconfig = CU_FUNC_CACHE_PREFER_NONE;
  return CUDA_SUCCESS;
}

CUresult cuCtxSetCacheConfig(CUfunc_cache) { return require_context(); }

// Peer access: directional, from the current context to peerContext's device. The same device is
// CUDA_ERROR_INVALID_DEVICE; twice is ALREADY_ENABLED; disabling what was never enabled is NOT_ENABLED.
CUresult cuCtxEnablePeerAccess(CUcontext peerContext, unsigned int Flags) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (Flags != 0) return CUDA_ERROR_INVALID_VALUE;
  if (!valid_ctx(peerContext)) return CUDA_ERROR_INVALID_CONTEXT;
  CUcontext cur = current_context();
  if (peerContext->device == cur->device) return CUDA_ERROR_INVALID_DEVICE;
  std::lock_guard lk(g_ctx_mutex);
  for (CUcontext p : cur->peers)
    if (p == peerContext) return CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED;
  cur->peers.push_back(peerContext);
  return CUDA_SUCCESS;
}

CUresult cuCtxDisablePeerAccess(CUcontext peerContext) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (!valid_ctx(peerContext)) return CUDA_ERROR_INVALID_CONTEXT;
  CUcontext cur = current_context();
  std::lock_guard lk(g_ctx_mutex);
  auto it = std::find(cur->peers.begin(), cur->peers.end(), peerContext);
  if (it == cur->peers.end()) return CUDA_ERROR_PEER_ACCESS_NOT_ENABLED;
  cur->peers.erase(it);
  return CUDA_SUCCESS;
}
