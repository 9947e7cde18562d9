// Every symbol libphos exports: the dlsym hook, the cu* entry points it wraps (by their versioned,
// ABI-defining names, _ptsz variants distinct) and the phos_hijack_* diagnostics. Each is a one-line
// forward to the concept file that owns it (the alloc-override.c rule); no logic lives here.
#include <dlfcn.h>

#include <algorithm>
#include <string_view>

#include <phos/hijack.h>

#include "diag.h"
#include "driver.h"
#include "copy.h"
#include "init.h"
#include "interpose.h"
#include "launch-track.h"
#include "vmm.h"

#define PHOS_API extern "C" __attribute__((visibility("default")))

using namespace phos::hijack;

// ---- dlsym ------------------------------------------------------------------------------------------
PHOS_API void* dlsym(void* __restrict handle, const char* __restrict name) noexcept { return dlsym_hook(handle, name, __builtin_return_address(0)); }

// ---- cuGetProcAddress -------------------------------------------------------------------------------
PHOS_API CUresult cuGetProcAddress(const char* s, void** pfn, int ver, cuuint64_t flags) { return proc_address_v1(s, pfn, ver, flags); }
PHOS_API CUresult cuGetProcAddress_v2(const char* s, void** pfn, int ver, cuuint64_t flags, CUdriverProcAddressQueryResult* st) { return proc_address_v2(s, pfn, ver, flags, st); }

// ---- init ------------------------------------------------------------------------------------------
PHOS_API CUresult cuInit(unsigned int flags) { return driver_init(flags); }

// ---- memory (vmm.cpp) -------------------------------------------------------------------------------
PHOS_API CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t n) { return mem_alloc(p, n); }
PHOS_API CUresult cuMemAllocPitch_v2(CUdeviceptr* p, size_t* pitch, size_t w, size_t h, unsigned int e) { return mem_alloc_pitch(p, pitch, w, h, e); }
PHOS_API CUresult cuMemFree_v2(CUdeviceptr p) { return mem_free(p); }
PHOS_API CUresult cuMemGetAddressRange_v2(CUdeviceptr* b, size_t* n, CUdeviceptr p) { return mem_get_address_range(b, n, p); }
PHOS_API CUresult cuMemGetInfo_v2(size_t* fr, size_t* tot) { return mem_get_info(fr, tot); }
PHOS_API CUresult cuPointerGetAttribute(void* d, CUpointer_attribute a, CUdeviceptr p) { return pointer_get_attribute(d, a, p); }
PHOS_API CUresult cuPointerGetAttributes(unsigned int n, CUpointer_attribute* a, void** d, CUdeviceptr p) { return pointer_get_attributes(n, a, d, p); }
PHOS_API CUresult cuMemAllocAsync(CUdeviceptr* p, size_t n, CUstream s) { return mem_alloc_async(p, n, s, false); }
PHOS_API CUresult cuMemAllocAsync_ptsz(CUdeviceptr* p, size_t n, CUstream s) { return mem_alloc_async(p, n, s, true); }
PHOS_API CUresult cuMemAllocFromPoolAsync(CUdeviceptr* p, size_t n, CUmemoryPool m, CUstream s) { return mem_alloc_from_pool_async(p, n, m, s, false); }
PHOS_API CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr* p, size_t n, CUmemoryPool m, CUstream s) { return mem_alloc_from_pool_async(p, n, m, s, true); }
PHOS_API CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s) { return mem_free_async(p, s, false); }
PHOS_API CUresult cuMemFreeAsync_ptsz(CUdeviceptr p, CUstream s) { return mem_free_async(p, s, true); }
PHOS_API CUresult cuMemCreate(CUmemGenericAllocationHandle* h, size_t n, const CUmemAllocationProp* pr, unsigned long long f) { return mem_create(h, n, pr, f); }
PHOS_API CUresult cuMemRelease(CUmemGenericAllocationHandle h) { return mem_release(h); }
PHOS_API CUresult cuMemMap(CUdeviceptr p, size_t n, size_t off, CUmemGenericAllocationHandle h, unsigned long long f) { return mem_map(p, n, off, h, f); }
PHOS_API CUresult cuMemUnmap(CUdeviceptr p, size_t n) { return mem_unmap(p, n); }
PHOS_API CUresult cuMemSetAccess(CUdeviceptr p, size_t n, const CUmemAccessDesc* d, size_t c) { return mem_set_access(p, n, d, c); }
PHOS_API CUresult cuMemAddressReserve(CUdeviceptr* p, size_t n, size_t al, CUdeviceptr addr, unsigned long long f) { return mem_address_reserve(p, n, al, addr, f); }
PHOS_API CUresult cuMemAddressFree(CUdeviceptr p, size_t n) { return mem_address_free(p, n); }

// ---- copies and memsets (copy.cpp) ------------------------------------------------------------------
PHOS_API CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n) { return hook_cuMemcpy(dst, src, n); }
PHOS_API CUresult cuMemcpy_ptds(CUdeviceptr dst, CUdeviceptr src, size_t n) { return hook_cuMemcpy_ptds(dst, src, n); }
PHOS_API CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) { return hook_cuMemcpyAsync(dst, src, n, s); }
PHOS_API CUresult cuMemcpyAsync_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) { return hook_cuMemcpyAsync_ptsz(dst, src, n, s); }
PHOS_API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) { return hook_cuMemcpyHtoD_v2(dst, src, n); }
PHOS_API CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr dst, const void* src, size_t n) { return hook_cuMemcpyHtoD_v2_ptds(dst, src, n); }
PHOS_API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream s) { return hook_cuMemcpyHtoDAsync_v2(dst, src, n, s); }
PHOS_API CUresult cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr dst, const void* src, size_t n, CUstream s) { return hook_cuMemcpyHtoDAsync_v2_ptsz(dst, src, n, s); }
PHOS_API CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) { return hook_cuMemcpyDtoH_v2(dst, src, n); }
PHOS_API CUresult cuMemcpyDtoH_v2_ptds(void* dst, CUdeviceptr src, size_t n) { return hook_cuMemcpyDtoH_v2_ptds(dst, src, n); }
PHOS_API CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream s) { return hook_cuMemcpyDtoHAsync_v2(dst, src, n, s); }
PHOS_API CUresult cuMemcpyDtoHAsync_v2_ptsz(void* dst, CUdeviceptr src, size_t n, CUstream s) { return hook_cuMemcpyDtoHAsync_v2_ptsz(dst, src, n, s); }
PHOS_API CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) { return hook_cuMemcpyDtoD_v2(dst, src, n); }
PHOS_API CUresult cuMemcpyDtoD_v2_ptds(CUdeviceptr dst, CUdeviceptr src, size_t n) { return hook_cuMemcpyDtoD_v2_ptds(dst, src, n); }
PHOS_API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) { return hook_cuMemcpyDtoDAsync_v2(dst, src, n, s); }
PHOS_API CUresult cuMemcpyPeer(CUdeviceptr d, CUcontext dc, CUdeviceptr s, CUcontext sc, size_t n) { return hook_cuMemcpyPeer(d, dc, s, sc, n); }
PHOS_API CUresult cuMemcpyPeer_ptds(CUdeviceptr d, CUcontext dc, CUdeviceptr s, CUcontext sc, size_t n) { return hook_cuMemcpyPeer_ptds(d, dc, s, sc, n); }
PHOS_API CUresult cuMemcpyPeerAsync(CUdeviceptr d, CUcontext dc, CUdeviceptr s, CUcontext sc, size_t n, CUstream st) { return hook_cuMemcpyPeerAsync(d, dc, s, sc, n, st); }
PHOS_API CUresult cuMemcpyPeerAsync_ptsz(CUdeviceptr d, CUcontext dc, CUdeviceptr s, CUcontext sc, size_t n, CUstream st) { return hook_cuMemcpyPeerAsync_ptsz(d, dc, s, sc, n, st); }
PHOS_API CUresult cuMemcpyDtoDAsync_v2_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) { return hook_cuMemcpyDtoDAsync_v2_ptsz(dst, src, n, s); }
PHOS_API CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) { return hook_cuMemsetD8_v2(dst, v, n); }
PHOS_API CUresult cuMemsetD8_v2_ptds(CUdeviceptr dst, unsigned char v, size_t n) { return hook_cuMemsetD8_v2_ptds(dst, v, n); }
PHOS_API CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream s) { return hook_cuMemsetD8Async(dst, v, n, s); }
PHOS_API CUresult cuMemsetD8Async_ptsz(CUdeviceptr dst, unsigned char v, size_t n, CUstream s) { return hook_cuMemsetD8Async_ptsz(dst, v, n, s); }
PHOS_API CUresult cuMemsetD2D8_v2(CUdeviceptr dst, size_t pitch, unsigned char v, size_t w, size_t h) { return hook_cuMemsetD2D8_v2(dst, pitch, v, w, h); }
PHOS_API CUresult cuMemsetD2D8_v2_ptds(CUdeviceptr dst, size_t pitch, unsigned char v, size_t w, size_t h) { return hook_cuMemsetD2D8_v2_ptds(dst, pitch, v, w, h); }
PHOS_API CUresult cuMemsetD2D8Async(CUdeviceptr dst, size_t pitch, unsigned char v, size_t w, size_t h, CUstream s) { return hook_cuMemsetD2D8Async(dst, pitch, v, w, h, s); }
PHOS_API CUresult cuMemsetD2D8Async_ptsz(CUdeviceptr dst, size_t pitch, unsigned char v, size_t w, size_t h, CUstream s) { return hook_cuMemsetD2D8Async_ptsz(dst, pitch, v, w, h, s); }
PHOS_API CUresult cuMemsetD16_v2(CUdeviceptr dst, unsigned short v, size_t n) { return hook_cuMemsetD16_v2(dst, v, n); }
PHOS_API CUresult cuMemsetD16_v2_ptds(CUdeviceptr dst, unsigned short v, size_t n) { return hook_cuMemsetD16_v2_ptds(dst, v, n); }
PHOS_API CUresult cuMemsetD16Async(CUdeviceptr dst, unsigned short v, size_t n, CUstream s) { return hook_cuMemsetD16Async(dst, v, n, s); }
PHOS_API CUresult cuMemsetD16Async_ptsz(CUdeviceptr dst, unsigned short v, size_t n, CUstream s) { return hook_cuMemsetD16Async_ptsz(dst, v, n, s); }
PHOS_API CUresult cuMemsetD2D16_v2(CUdeviceptr dst, size_t pitch, unsigned short v, size_t w, size_t h) { return hook_cuMemsetD2D16_v2(dst, pitch, v, w, h); }
PHOS_API CUresult cuMemsetD2D16_v2_ptds(CUdeviceptr dst, size_t pitch, unsigned short v, size_t w, size_t h) { return hook_cuMemsetD2D16_v2_ptds(dst, pitch, v, w, h); }
PHOS_API CUresult cuMemsetD2D16Async(CUdeviceptr dst, size_t pitch, unsigned short v, size_t w, size_t h, CUstream s) { return hook_cuMemsetD2D16Async(dst, pitch, v, w, h, s); }
PHOS_API CUresult cuMemsetD2D16Async_ptsz(CUdeviceptr dst, size_t pitch, unsigned short v, size_t w, size_t h, CUstream s) { return hook_cuMemsetD2D16Async_ptsz(dst, pitch, v, w, h, s); }
PHOS_API CUresult cuMemsetD32_v2(CUdeviceptr dst, unsigned int v, size_t n) { return hook_cuMemsetD32_v2(dst, v, n); }
PHOS_API CUresult cuMemsetD32_v2_ptds(CUdeviceptr dst, unsigned int v, size_t n) { return hook_cuMemsetD32_v2_ptds(dst, v, n); }
PHOS_API CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned int v, size_t n, CUstream s) { return hook_cuMemsetD32Async(dst, v, n, s); }
PHOS_API CUresult cuMemsetD32Async_ptsz(CUdeviceptr dst, unsigned int v, size_t n, CUstream s) { return hook_cuMemsetD32Async_ptsz(dst, v, n, s); }
PHOS_API CUresult cuMemsetD2D32_v2(CUdeviceptr dst, size_t pitch, unsigned int v, size_t w, size_t h) { return hook_cuMemsetD2D32_v2(dst, pitch, v, w, h); }
PHOS_API CUresult cuMemsetD2D32_v2_ptds(CUdeviceptr dst, size_t pitch, unsigned int v, size_t w, size_t h) { return hook_cuMemsetD2D32_v2_ptds(dst, pitch, v, w, h); }
PHOS_API CUresult cuMemsetD2D32Async(CUdeviceptr dst, size_t pitch, unsigned int v, size_t w, size_t h, CUstream s) { return hook_cuMemsetD2D32Async(dst, pitch, v, w, h, s); }
PHOS_API CUresult cuMemsetD2D32Async_ptsz(CUdeviceptr dst, size_t pitch, unsigned int v, size_t w, size_t h, CUstream s) { return hook_cuMemsetD2D32Async_ptsz(dst, pitch, v, w, h, s); }
PHOS_API CUresult cuMemcpy2D_v2(const CUDA_MEMCPY2D* p) { return hook_cuMemcpy2D_v2(p); }
PHOS_API CUresult cuMemcpy2D_v2_ptds(const CUDA_MEMCPY2D* p) { return hook_cuMemcpy2D_v2_ptds(p); }
PHOS_API CUresult cuMemcpy2DUnaligned_v2(const CUDA_MEMCPY2D* p) { return hook_cuMemcpy2DUnaligned_v2(p); }
PHOS_API CUresult cuMemcpy2DUnaligned_v2_ptds(const CUDA_MEMCPY2D* p) { return hook_cuMemcpy2DUnaligned_v2_ptds(p); }
PHOS_API CUresult cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D* p, CUstream s) { return hook_cuMemcpy2DAsync_v2(p, s); }
PHOS_API CUresult cuMemcpy2DAsync_v2_ptsz(const CUDA_MEMCPY2D* p, CUstream s) { return hook_cuMemcpy2DAsync_v2_ptsz(p, s); }
PHOS_API CUresult cuMemcpy3D_v2(const CUDA_MEMCPY3D* p) { return hook_cuMemcpy3D_v2(p); }
PHOS_API CUresult cuMemcpy3D_v2_ptds(const CUDA_MEMCPY3D* p) { return hook_cuMemcpy3D_v2_ptds(p); }
PHOS_API CUresult cuMemcpy3DAsync_v2(const CUDA_MEMCPY3D* p, CUstream s) { return hook_cuMemcpy3DAsync_v2(p, s); }
PHOS_API CUresult cuMemcpy3DAsync_v2_ptsz(const CUDA_MEMCPY3D* p, CUstream s) { return hook_cuMemcpy3DAsync_v2_ptsz(p, s); }

// ---- launches and code (launch-track.cpp) ----------------------------------------------------------
PHOS_API CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned sh, CUstream s, void** p, void** e) { return launch_kernel(f, gx, gy, gz, bx, by, bz, sh, s, p, e, false); }
PHOS_API CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned sh, CUstream s, void** p, void** e) { return launch_kernel(f, gx, gy, gz, bx, by, bz, sh, s, p, e, true); }
PHOS_API CUresult cuLaunchKernelEx(const CUlaunchConfig* c, CUfunction f, void** p, void** e) { return launch_kernel_ex(c, f, p, e, false); }
PHOS_API CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig* c, CUfunction f, void** p, void** e) { return launch_kernel_ex(c, f, p, e, true); }
PHOS_API CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned sh, CUstream s, void** p) { return launch_cooperative(f, gx, gy, gz, bx, by, bz, sh, s, p, false); }
PHOS_API CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned sh, CUstream s, void** p) { return launch_cooperative(f, gx, gy, gz, bx, by, bz, sh, s, p, true); }
PHOS_API CUresult cuGraphLaunch(CUgraphExec g, CUstream s) { return graph_launch(g, s, false); }
PHOS_API CUresult cuGraphLaunch_ptsz(CUgraphExec g, CUstream s) { return graph_launch(g, s, true); }
PHOS_API CUresult cuLibraryGetKernel(CUkernel* k, CUlibrary l, const char* n) { return library_get_kernel(k, l, n); }
PHOS_API CUresult cuLibraryUnload(CUlibrary l) { return library_unload(l); }
PHOS_API CUresult cuModuleUnload(CUmodule m) { return module_unload(m); }

// ---- diagnostics (diag.cpp) ------------------------------------------------------------------------
PHOS_API int phos_hijack_get_stats(phos_hijack_stats* out) { return get_stats(out); }
PHOS_API int phos_hijack_arm(int on) { return arm(on); }
PHOS_API int phos_hijack_hash_round(uint32_t* changed, uint32_t cap, uint32_t* n) { return run_hash_round(changed, cap, n); }

// ---- the table of wrapped names (sorted: dlsym answers by binary search) ---------------------------
namespace {
// Address constants: the compiler emits this table as initialised data (no constructor runs), so
// dlsym can consult it before any initialiser of libphos has run.
const phos::hijack::WrappedEntry kEntries[] = {
#define PHOS_X(name, pfn) {#name, reinterpret_cast<void*>(static_cast<pfn>(&::name))},
    PHOS_WRAPPED_ENTRY_POINTS(PHOS_X)
#undef PHOS_X
};
constexpr const char* kNames[] = {
#define PHOS_X(name, pfn) #name,
    PHOS_WRAPPED_ENTRY_POINTS(PHOS_X)
#undef PHOS_X
};
constexpr bool sorted() {
  for (size_t i = 1; i < sizeof kNames / sizeof kNames[0]; ++i)
    if (!(std::string_view(kNames[i - 1]) < std::string_view(kNames[i]))) return false;
  return true;
}
}  // namespace

const phos::hijack::WrappedEntry* phos::hijack::wrapped_entries(size_t* count) {
  static_assert(sorted(), "PHOS_WRAPPED_ENTRY_POINTS must be sorted by name (strcmp order)");
  *count = sizeof kEntries / sizeof kEntries[0];
  return kEntries;
}
