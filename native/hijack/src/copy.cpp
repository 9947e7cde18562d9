// Copy and memset hooks (copy.h): gate, on-demand wait, forward. One shape per call family.
#include "copy.h"

#include "driver.h"
#include "gate.h"

namespace phos::hijack {

CUresult hook_cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_ranges(dst, n, src, n);
  return PHOS_REAL(cuMemcpy, dst, src, n);
}

CUresult hook_cuMemcpy_ptds(CUdeviceptr dst, CUdeviceptr src, size_t n) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_ranges(dst, n, src, n);
  return PHOS_REAL(cuMemcpy_ptds, dst, src, n);
}

CUresult hook_cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_ranges(dst, n, src, n);
  return PHOS_REAL(cuMemcpyAsync, dst, src, n, s);
}

CUresult hook_cuMemcpyAsync_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_ranges(dst, n, src, n);
  return PHOS_REAL(cuMemcpyAsync_ptsz, dst, src, n, s);
}

CUresult hook_cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(dst, n);
  return PHOS_REAL(cuMemcpyHtoD_v2, dst, src, n);
}

CUresult hook_cuMemcpyHtoD_v2_ptds(CUdeviceptr dst, const void* src, size_t n) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(dst, n);
  return PHOS_REAL(cuMemcpyHtoD_v2_ptds, dst, src, n);
}

CUresult hook_cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(dst, n);
  return PHOS_REAL(cuMemcpyHtoDAsync_v2, dst, src, n, s);
}

CUresult hook_cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr dst, const void* src, size_t n, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(dst, n);
  return PHOS_REAL(cuMemcpyHtoDAsync_v2_ptsz, dst, src, n, s);
}

CUresult hook_cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(src, n);
  return PHOS_REAL(cuMemcpyDtoH_v2, dst, src, n);
}

CUresult hook_cuMemcpyDtoH_v2_ptds(void* dst, CUdeviceptr src, size_t n) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(src, n);
  return PHOS_REAL(cuMemcpyDtoH_v2_ptds, dst, src, n);
}

CUresult hook_cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(src, n);
  return PHOS_REAL(cuMemcpyDtoHAsync_v2, dst, src, n, s);
}

CUresult hook_cuMemcpyDtoHAsync_v2_ptsz(void* dst, CUdeviceptr src, size_t n, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(src, n);
  return PHOS_REAL(cuMemcpyDtoHAsync_v2_ptsz, dst, src, n, s);
}

CUresult hook_cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_ranges(dst, n, src, n);
  return PHOS_REAL(cuMemcpyDtoD_v2, dst, src, n);
}

CUresult hook_cuMemcpyDtoD_v2_ptds(CUdeviceptr dst, CUdeviceptr src, size_t n) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_ranges(dst, n, src, n);
  return PHOS_REAL(cuMemcpyDtoD_v2_ptds, dst, src, n);
}

CUresult hook_cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_ranges(dst, n, src, n);
  return PHOS_REAL(cuMemcpyDtoDAsync_v2, dst, src, n, s);
}

CUresult hook_cuMemcpyDtoDAsync_v2_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_ranges(dst, n, src, n);
  return PHOS_REAL(cuMemcpyDtoDAsync_v2_ptsz, dst, src, n, s);
}

// Peer copies: both sides are device memory (of any device), so both may be pending after a restore.
CUresult hook_cuMemcpyPeer(CUdeviceptr dst, CUcontext dc, CUdeviceptr src, CUcontext sc, size_t n) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_ranges(dst, n, src, n);
  return PHOS_REAL(cuMemcpyPeer, dst, dc, src, sc, n);
}

CUresult hook_cuMemcpyPeer_ptds(CUdeviceptr dst, CUcontext dc, CUdeviceptr src, CUcontext sc, size_t n) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_ranges(dst, n, src, n);
  return PHOS_REAL(cuMemcpyPeer_ptds, dst, dc, src, sc, n);
}

CUresult hook_cuMemcpyPeerAsync(CUdeviceptr dst, CUcontext dc, CUdeviceptr src, CUcontext sc, size_t n, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_ranges(dst, n, src, n);
  return PHOS_REAL(cuMemcpyPeerAsync, dst, dc, src, sc, n, s);
}

CUresult hook_cuMemcpyPeerAsync_ptsz(CUdeviceptr dst, CUcontext dc, CUdeviceptr src, CUcontext sc, size_t n,
                                     CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_ranges(dst, n, src, n);
  return PHOS_REAL(cuMemcpyPeerAsync_ptsz, dst, dc, src, sc, n, s);
}

CUresult hook_cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(dst, static_cast<uint64_t>(n) * 1);
  return PHOS_REAL(cuMemsetD8_v2, dst, v, n);
}

CUresult hook_cuMemsetD8_v2_ptds(CUdeviceptr dst, unsigned char v, size_t n) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(dst, static_cast<uint64_t>(n) * 1);
  return PHOS_REAL(cuMemsetD8_v2_ptds, dst, v, n);
}

CUresult hook_cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(dst, static_cast<uint64_t>(n) * 1);
  return PHOS_REAL(cuMemsetD8Async, dst, v, n, s);
}

CUresult hook_cuMemsetD8Async_ptsz(CUdeviceptr dst, unsigned char v, size_t n, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(dst, static_cast<uint64_t>(n) * 1);
  return PHOS_REAL(cuMemsetD8Async_ptsz, dst, v, n, s);
}

CUresult hook_cuMemsetD2D8_v2(CUdeviceptr dst, size_t pitch, unsigned char v, size_t w, size_t h) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) if (h) ondemand_wait_range(dst, static_cast<uint64_t>(pitch) * (h - 1) + static_cast<uint64_t>(w) * 1);
  return PHOS_REAL(cuMemsetD2D8_v2, dst, pitch, v, w, h);
}

CUresult hook_cuMemsetD2D8_v2_ptds(CUdeviceptr dst, size_t pitch, unsigned char v, size_t w, size_t h) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) if (h) ondemand_wait_range(dst, static_cast<uint64_t>(pitch) * (h - 1) + static_cast<uint64_t>(w) * 1);
  return PHOS_REAL(cuMemsetD2D8_v2_ptds, dst, pitch, v, w, h);
}

CUresult hook_cuMemsetD2D8Async(CUdeviceptr dst, size_t pitch, unsigned char v, size_t w, size_t h, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) if (h) ondemand_wait_range(dst, static_cast<uint64_t>(pitch) * (h - 1) + static_cast<uint64_t>(w) * 1);
  return PHOS_REAL(cuMemsetD2D8Async, dst, pitch, v, w, h, s);
}

CUresult hook_cuMemsetD2D8Async_ptsz(CUdeviceptr dst, size_t pitch, unsigned char v, size_t w, size_t h, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) if (h) ondemand_wait_range(dst, static_cast<uint64_t>(pitch) * (h - 1) + static_cast<uint64_t>(w) * 1);
  return PHOS_REAL(cuMemsetD2D8Async_ptsz, dst, pitch, v, w, h, s);
}

CUresult hook_cuMemsetD16_v2(CUdeviceptr dst, unsigned short v, size_t n) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(dst, static_cast<uint64_t>(n) * 2);
  return PHOS_REAL(cuMemsetD16_v2, dst, v, n);
}

CUresult hook_cuMemsetD16_v2_ptds(CUdeviceptr dst, unsigned short v, size_t n) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(dst, static_cast<uint64_t>(n) * 2);
  return PHOS_REAL(cuMemsetD16_v2_ptds, dst, v, n);
}

CUresult hook_cuMemsetD16Async(CUdeviceptr dst, unsigned short v, size_t n, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(dst, static_cast<uint64_t>(n) * 2);
  return PHOS_REAL(cuMemsetD16Async, dst, v, n, s);
}

CUresult hook_cuMemsetD16Async_ptsz(CUdeviceptr dst, unsigned short v, size_t n, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(dst, static_cast<uint64_t>(n) * 2);
  return PHOS_REAL(cuMemsetD16Async_ptsz, dst, v, n, s);
}

CUresult hook_cuMemsetD2D16_v2(CUdeviceptr dst, size_t pitch, unsigned short v, size_t w, size_t h) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) if (h) ondemand_wait_range(dst, static_cast<uint64_t>(pitch) * (h - 1) + static_cast<uint64_t>(w) * 2);
  return PHOS_REAL(cuMemsetD2D16_v2, dst, pitch, v, w, h);
}

CUresult hook_cuMemsetD2D16_v2_ptds(CUdeviceptr dst, size_t pitch, unsigned short v, size_t w, size_t h) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) if (h) ondemand_wait_range(dst, static_cast<uint64_t>(pitch) * (h - 1) + static_cast<uint64_t>(w) * 2);
  return PHOS_REAL(cuMemsetD2D16_v2_ptds, dst, pitch, v, w, h);
}

CUresult hook_cuMemsetD2D16Async(CUdeviceptr dst, size_t pitch, unsigned short v, size_t w, size_t h, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) if (h) ondemand_wait_range(dst, static_cast<uint64_t>(pitch) * (h - 1) + static_cast<uint64_t>(w) * 2);
  return PHOS_REAL(cuMemsetD2D16Async, dst, pitch, v, w, h, s);
}

CUresult hook_cuMemsetD2D16Async_ptsz(CUdeviceptr dst, size_t pitch, unsigned short v, size_t w, size_t h, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) if (h) ondemand_wait_range(dst, static_cast<uint64_t>(pitch) * (h - 1) + static_cast<uint64_t>(w) * 2);
  return PHOS_REAL(cuMemsetD2D16Async_ptsz, dst, pitch, v, w, h, s);
}

CUresult hook_cuMemsetD32_v2(CUdeviceptr dst, unsigned int v, size_t n) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(dst, static_cast<uint64_t>(n) * 4);
  return PHOS_REAL(cuMemsetD32_v2, dst, v, n);
}

CUresult hook_cuMemsetD32_v2_ptds(CUdeviceptr dst, unsigned int v, size_t n) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(dst, static_cast<uint64_t>(n) * 4);
  return PHOS_REAL(cuMemsetD32_v2_ptds, dst, v, n);
}

CUresult hook_cuMemsetD32Async(CUdeviceptr dst, unsigned int v, size_t n, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(dst, static_cast<uint64_t>(n) * 4);
  return PHOS_REAL(cuMemsetD32Async, dst, v, n, s);
}

CUresult hook_cuMemsetD32Async_ptsz(CUdeviceptr dst, unsigned int v, size_t n, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_range(dst, static_cast<uint64_t>(n) * 4);
  return PHOS_REAL(cuMemsetD32Async_ptsz, dst, v, n, s);
}

CUresult hook_cuMemsetD2D32_v2(CUdeviceptr dst, size_t pitch, unsigned int v, size_t w, size_t h) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) if (h) ondemand_wait_range(dst, static_cast<uint64_t>(pitch) * (h - 1) + static_cast<uint64_t>(w) * 4);
  return PHOS_REAL(cuMemsetD2D32_v2, dst, pitch, v, w, h);
}

CUresult hook_cuMemsetD2D32_v2_ptds(CUdeviceptr dst, size_t pitch, unsigned int v, size_t w, size_t h) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) if (h) ondemand_wait_range(dst, static_cast<uint64_t>(pitch) * (h - 1) + static_cast<uint64_t>(w) * 4);
  return PHOS_REAL(cuMemsetD2D32_v2_ptds, dst, pitch, v, w, h);
}

CUresult hook_cuMemsetD2D32Async(CUdeviceptr dst, size_t pitch, unsigned int v, size_t w, size_t h, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) if (h) ondemand_wait_range(dst, static_cast<uint64_t>(pitch) * (h - 1) + static_cast<uint64_t>(w) * 4);
  return PHOS_REAL(cuMemsetD2D32Async, dst, pitch, v, w, h, s);
}

CUresult hook_cuMemsetD2D32Async_ptsz(CUdeviceptr dst, size_t pitch, unsigned int v, size_t w, size_t h, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) if (h) ondemand_wait_range(dst, static_cast<uint64_t>(pitch) * (h - 1) + static_cast<uint64_t>(w) * 4);
  return PHOS_REAL(cuMemsetD2D32Async_ptsz, dst, pitch, v, w, h, s);
}

CUresult hook_cuMemcpy2D_v2(const CUDA_MEMCPY2D* p) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_chunks({}, true);  // descriptors: every pending chunk
  return PHOS_REAL(cuMemcpy2D_v2, p);
}

CUresult hook_cuMemcpy2D_v2_ptds(const CUDA_MEMCPY2D* p) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_chunks({}, true);  // descriptors: every pending chunk
  return PHOS_REAL(cuMemcpy2D_v2_ptds, p);
}

CUresult hook_cuMemcpy2DUnaligned_v2(const CUDA_MEMCPY2D* p) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_chunks({}, true);  // descriptors: every pending chunk
  return PHOS_REAL(cuMemcpy2DUnaligned_v2, p);
}

CUresult hook_cuMemcpy2DUnaligned_v2_ptds(const CUDA_MEMCPY2D* p) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_chunks({}, true);  // descriptors: every pending chunk
  return PHOS_REAL(cuMemcpy2DUnaligned_v2_ptds, p);
}

CUresult hook_cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D* p, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_chunks({}, true);  // descriptors: every pending chunk
  return PHOS_REAL(cuMemcpy2DAsync_v2, p, s);
}

CUresult hook_cuMemcpy2DAsync_v2_ptsz(const CUDA_MEMCPY2D* p, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_chunks({}, true);  // descriptors: every pending chunk
  return PHOS_REAL(cuMemcpy2DAsync_v2_ptsz, p, s);
}

CUresult hook_cuMemcpy3D_v2(const CUDA_MEMCPY3D* p) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_chunks({}, true);  // descriptors: every pending chunk
  return PHOS_REAL(cuMemcpy3D_v2, p);
}

CUresult hook_cuMemcpy3D_v2_ptds(const CUDA_MEMCPY3D* p) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_chunks({}, true);  // descriptors: every pending chunk
  return PHOS_REAL(cuMemcpy3D_v2_ptds, p);
}

CUresult hook_cuMemcpy3DAsync_v2(const CUDA_MEMCPY3D* p, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_chunks({}, true);  // descriptors: every pending chunk
  return PHOS_REAL(cuMemcpy3DAsync_v2, p, s);
}

CUresult hook_cuMemcpy3DAsync_v2_ptsz(const CUDA_MEMCPY3D* p, CUstream s) {
  GateGuard g;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_chunks({}, true);  // descriptors: every pending chunk
  return PHOS_REAL(cuMemcpy3DAsync_v2_ptsz, p, s);
}

}  // namespace phos::hijack
