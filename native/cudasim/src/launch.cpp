// Kernel launches: parameters are packed into the PTX layout during the call (CUDA copies them
// synchronously), then the grid runs as one op on the stream's worker.
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "arena.h"
#include "context.h"
#include "kernels.h"
#include "log.h"
#include "module.h"
#include "stream.h"

using namespace phos::cudasim;

namespace {

struct Dims {
  unsigned grid[3];
  unsigned block[3];
  unsigned shared;
};

CUresult check_dims(const Dims &d) {
  for (unsigned v : d.grid)
    if (v == 0) return CUDA_ERROR_INVALID_VALUE;
  for (unsigned v : d.block)
    if (v == 0) return CUDA_ERROR_INVALID_VALUE;
  if (d.grid[1] > 65535 || d.grid[2] > 65535 || d.block[2] > 64 || d.block[0] > 1024 || d.block[1] > 1024)
    return CUDA_ERROR_INVALID_VALUE;
  if (uint64_t{d.block[0]} * d.block[1] * d.block[2] > 1024) return CUDA_ERROR_INVALID_VALUE;
  return CUDA_SUCCESS;
}

// kernelParams: one pointer per parameter; extra: a caller-packed buffer. Exactly one may be given
// when the entry has parameters.
CUresult pack(const CUfunc_st *f, void **params, void **extra, std::vector<uint8_t> *buf) {
  if (params && extra) return CUDA_ERROR_INVALID_VALUE;
  buf->assign(f->entry.param_bytes, 0);
  if (params) {
    for (size_t i = 0; i < f->offsets.size(); i++) {
      if (!params[i]) return CUDA_ERROR_INVALID_VALUE;
      memcpy(buf->data() + f->offsets[i], params[i], f->sizes[i]);
    }
    return CUDA_SUCCESS;
  }
  if (!extra) return f->offsets.empty() ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
  const void *ptr = nullptr;
  size_t size = 0;
  for (void **e = extra; *e != CU_LAUNCH_PARAM_END; e += 2) {
    if (e[0] == CU_LAUNCH_PARAM_BUFFER_POINTER) ptr = e[1];
    else if (e[0] == CU_LAUNCH_PARAM_BUFFER_SIZE) size = *static_cast<size_t *>(e[1]);
    else return CUDA_ERROR_INVALID_VALUE;
  }
  if (!ptr || size < f->entry.param_bytes) return CUDA_ERROR_INVALID_VALUE;
  memcpy(buf->data(), ptr, f->entry.param_bytes);
  return CUDA_SUCCESS;
}

// What a GPU would fault on, checked where the sim can see it: every 8-byte parameter that points into
// a device mapping must be reachable from the launching device — its own cuMemAlloc memory, another
// device's once cuCtxEnablePeerAccess allowed it, VMM memory whose cuMemSetAccess granted this device.
// Pointers the kernel finds in memory (tables) are not followed. A miss fails the launch with
// CUDA_ERROR_ILLEGAL_ADDRESS (logged), not asynchronously and not sticky as on a GPU.
CUresult check_reach(const CUfunc_st *f, const std::vector<uint8_t> &params, CUcontext ctx) {
  const CUdevice dev = ctx ? ctx->device : 0;
  arena::State &st = arena::state();
  for (size_t i = 0; i < f->offsets.size(); i++) {
    if (f->sizes[i] != 8) continue;
    uint64_t v;
    memcpy(&v, params.data() + f->offsets[i], 8);
    CUdevice owner;
    bool ok, from_alloc;
    {
      std::lock_guard lk(st.m);
      const arena::Mapping *m = arena::find_mapping(v);
      if (!m) continue;
      owner = m->phys->device;
      from_alloc = m->phys->from_alloc;
      ok = m->access[dev] != PROT_NONE;
    }
    if (!ok && from_alloc) ok = peer_enabled(ctx, owner);
    if (!ok) {
      CUSIM_ERROR("kernel %s on device %d: parameter %zu = 0x%llx is memory of device %d that device %d "
                  "may not access (peer access not enabled / cuMemSetAccess not granted): "
                  "CUDA_ERROR_ILLEGAL_ADDRESS", f->entry.name.c_str(), dev, i,
                  static_cast<unsigned long long>(v), owner, dev);
      return CUDA_ERROR_ILLEGAL_ADDRESS;
    }
  }
  return CUDA_SUCCESS;
}

struct LaunchOp {
  cudasim_launch desc{};
  std::vector<uint8_t> params;
  std::vector<uint32_t> offsets, sizes;
  cudasim_block_fn fn = nullptr;
  uint32_t shared_bytes = 0;

  void run() {
    desc.param_offset = offsets.data();
    desc.param_size = sizes.data();
    desc.params = params.data();
    kernels::run_grid(desc, fn, shared_bytes);
  }
};

CUresult launch(CUfunction hf, const Dims &d, CUstream hs, void **params, void **extra, bool ptsz) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  CUfunc_st *f = launchable(hf);
  if (!f) return CUDA_ERROR_INVALID_HANDLE;
  if (CUresult r = check_dims(d)) return r;
  if (d.shared > static_cast<unsigned>(std::max(f->max_dynamic_shared, 48 * 1024)))
    return CUDA_ERROR_INVALID_VALUE;
  if (!bind_kernel(f)) {
    if (log::first_time("kernel:" + f->entry.name))
      CUSIM_WARN("no CPU kernel registered for entry %s; launch fails with CUDA_ERROR_NOT_FOUND",
                 f->entry.name.c_str());
    return CUDA_ERROR_NOT_FOUND;
  }
  auto op = std::make_shared<LaunchOp>();
  if (CUresult r = pack(f, params, extra, &op->params)) return r;
  CUstream_st *s;
  if (CUresult r = resolve_stream(hs, ptsz, &s)) return r;
  if (CUresult r = check_reach(f, op->params, s->kind == CUstream_st::Kind::user ? s->ctx : current_context()))
    return r;
  op->offsets = f->offsets;
  op->sizes = f->sizes;
  op->fn = f->fn.load();
  op->shared_bytes = std::max(f->entry.static_shared, f->plugin_shared) + d.shared;
  op->desc.size = sizeof(cudasim_launch);
  memcpy(op->desc.grid, d.grid, sizeof d.grid);
  memcpy(op->desc.block, d.block, sizeof d.block);
  op->desc.shared_bytes = d.shared;
  op->desc.num_params = static_cast<uint32_t>(f->offsets.size());
  submit(s, [op] { op->run(); });
  return CUDA_SUCCESS;
}

CUresult launch_ex(const CUlaunchConfig *c, CUfunction f, void **params, void **extra, bool ptsz) {
  if (!c) return CUDA_ERROR_INVALID_VALUE;
  for (unsigned i = 0; i < c->numAttrs; i++) {
    if (c->attrs[i].id == CU_LAUNCH_ATTRIBUTE_COOPERATIVE && c->attrs[i].value.cooperative && extra)
      return CUDA_ERROR_INVALID_VALUE;  // extra is not allowed for cooperative kernels
  }
  Dims d{{c->gridDimX, c->gridDimY, c->gridDimZ}, {c->blockDimX, c->blockDimY, c->blockDimZ},
         c->sharedMemBytes};
  return launch(f, d, c->hStream, params, extra, ptsz);
}

}  // namespace

CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                        unsigned int by, unsigned int bz, unsigned int shmem, CUstream s, void **params,
                        void **extra) {
  return launch(f, Dims{{gx, gy, gz}, {bx, by, bz}, shmem}, s, params, extra, false);
}

CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                             unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem,
                             CUstream s, void **params, void **extra) {
  return launch(f, Dims{{gx, gy, gz}, {bx, by, bz}, shmem}, s, params, extra, true);
}

CUresult cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction f, void **params, void **extra) {
  return launch_ex(config, f, params, extra, false);
}

CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *config, CUfunction f, void **params, void **extra) {
  return launch_ex(config, f, params, extra, true);
}

CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                   unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem,
                                   CUstream s, void **params) {
  return launch(f, Dims{{gx, gy, gz}, {bx, by, bz}, shmem}, s, params, nullptr, false);
}

CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                        unsigned int bx, unsigned int by, unsigned int bz,
                                        unsigned int shmem, CUstream s, void **params) {
  return launch(f, Dims{{gx, gy, gz}, {bx, by, bz}, shmem}, s, params, nullptr, true);
}

CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int *numBlocks, CUfunction func, int blockSize,
                                                     size_t) {
  if (!numBlocks || blockSize <= 0) return CUDA_ERROR_INVALID_VALUE;
  if (!launchable(func)) return CUDA_ERROR_INVALID_HANDLE;
  *numBlocks = std::max(1, std::min(32, 2048 / blockSize));
  return CUDA_SUCCESS;
}

CUresult cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int *numBlocks, CUfunction func,
                                                              int blockSize, size_t shmem, unsigned int) {
  return cuOccupancyMaxActiveBlocksPerMultiprocessor(numBlocks, func, blockSize, shmem);
}
