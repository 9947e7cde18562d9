// Copies and memsets: they pass the freeze gate and, while chunks are pending after a thaw, wait for the
// chunks they touch (exact ranges for 1-D calls, every pending chunk for 2-D/3-D descriptor copies).
// Batch, peer and array copies are not wrapped (they resolve to the driver directly).
#pragma once
#include <cuda.h>

namespace phos::hijack {

CUresult hook_cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n);
CUresult hook_cuMemcpy_ptds(CUdeviceptr dst, CUdeviceptr src, size_t n);
CUresult hook_cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s);
CUresult hook_cuMemcpyAsync_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s);
CUresult hook_cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n);
CUresult hook_cuMemcpyHtoD_v2_ptds(CUdeviceptr dst, const void* src, size_t n);
CUresult hook_cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream s);
CUresult hook_cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr dst, const void* src, size_t n, CUstream s);
CUresult hook_cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n);
CUresult hook_cuMemcpyDtoH_v2_ptds(void* dst, CUdeviceptr src, size_t n);
CUresult hook_cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream s);
CUresult hook_cuMemcpyDtoHAsync_v2_ptsz(void* dst, CUdeviceptr src, size_t n, CUstream s);
CUresult hook_cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n);
CUresult hook_cuMemcpyDtoD_v2_ptds(CUdeviceptr dst, CUdeviceptr src, size_t n);
CUresult hook_cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s);
CUresult hook_cuMemcpyPeer(CUdeviceptr dst, CUcontext dc, CUdeviceptr src, CUcontext sc, size_t n);
CUresult hook_cuMemcpyPeer_ptds(CUdeviceptr dst, CUcontext dc, CUdeviceptr src, CUcontext sc, size_t n);
CUresult hook_cuMemcpyPeerAsync(CUdeviceptr dst, CUcontext dc, CUdeviceptr src, CUcontext sc, size_t n, CUstream s);
CUresult hook_cuMemcpyPeerAsync_ptsz(CUdeviceptr dst, CUcontext dc, CUdeviceptr src, CUcontext sc, size_t n, CUstream s);
CUresult hook_cuMemcpyDtoDAsync_v2_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s);
CUresult hook_cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n);
CUresult hook_cuMemsetD8_v2_ptds(CUdeviceptr dst, unsigned char v, size_t n);
CUresult hook_cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream s);
CUresult hook_cuMemsetD8Async_ptsz(CUdeviceptr dst, unsigned char v, size_t n, CUstream s);
CUresult hook_cuMemsetD2D8_v2(CUdeviceptr dst, size_t pitch, unsigned char v, size_t w, size_t h);
CUresult hook_cuMemsetD2D8_v2_ptds(CUdeviceptr dst, size_t pitch, unsigned char v, size_t w, size_t h);
CUresult hook_cuMemsetD2D8Async(CUdeviceptr dst, size_t pitch, unsigned char v, size_t w, size_t h, CUstream s);
CUresult hook_cuMemsetD2D8Async_ptsz(CUdeviceptr dst, size_t pitch, unsigned char v, size_t w, size_t h, CUstream s);
CUresult hook_cuMemsetD16_v2(CUdeviceptr dst, unsigned short v, size_t n);
CUresult hook_cuMemsetD16_v2_ptds(CUdeviceptr dst, unsigned short v, size_t n);
CUresult hook_cuMemsetD16Async(CUdeviceptr dst, unsigned short v, size_t n, CUstream s);
CUresult hook_cuMemsetD16Async_ptsz(CUdeviceptr dst, unsigned short v, size_t n, CUstream s);
CUresult hook_cuMemsetD2D16_v2(CUdeviceptr dst, size_t pitch, unsigned short v, size_t w, size_t h);
CUresult hook_cuMemsetD2D16_v2_ptds(CUdeviceptr dst, size_t pitch, unsigned short v, size_t w, size_t h);
CUresult hook_cuMemsetD2D16Async(CUdeviceptr dst, size_t pitch, unsigned short v, size_t w, size_t h, CUstream s);
CUresult hook_cuMemsetD2D16Async_ptsz(CUdeviceptr dst, size_t pitch, unsigned short v, size_t w, size_t h, CUstream s);
CUresult hook_cuMemsetD32_v2(CUdeviceptr dst, unsigned int v, size_t n);
CUresult hook_cuMemsetD32_v2_ptds(CUdeviceptr dst, unsigned int v, size_t n);
CUresult hook_cuMemsetD32Async(CUdeviceptr dst, unsigned int v, size_t n, CUstream s);
CUresult hook_cuMemsetD32Async_ptsz(CUdeviceptr dst, unsigned int v, size_t n, CUstream s);
CUresult hook_cuMemsetD2D32_v2(CUdeviceptr dst, size_t pitch, unsigned int v, size_t w, size_t h);
CUresult hook_cuMemsetD2D32_v2_ptds(CUdeviceptr dst, size_t pitch, unsigned int v, size_t w, size_t h);
CUresult hook_cuMemsetD2D32Async(CUdeviceptr dst, size_t pitch, unsigned int v, size_t w, size_t h, CUstream s);
CUresult hook_cuMemsetD2D32Async_ptsz(CUdeviceptr dst, size_t pitch, unsigned int v, size_t w, size_t h, CUstream s);
CUresult hook_cuMemcpy2D_v2(const CUDA_MEMCPY2D* p);
CUresult hook_cuMemcpy2D_v2_ptds(const CUDA_MEMCPY2D* p);
CUresult hook_cuMemcpy2DUnaligned_v2(const CUDA_MEMCPY2D* p);
CUresult hook_cuMemcpy2DUnaligned_v2_ptds(const CUDA_MEMCPY2D* p);
CUresult hook_cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D* p, CUstream s);
CUresult hook_cuMemcpy2DAsync_v2_ptsz(const CUDA_MEMCPY2D* p, CUstream s);
CUresult hook_cuMemcpy3D_v2(const CUDA_MEMCPY3D* p);
CUresult hook_cuMemcpy3D_v2_ptds(const CUDA_MEMCPY3D* p);
CUresult hook_cuMemcpy3DAsync_v2(const CUDA_MEMCPY3D* p, CUstream s);
CUresult hook_cuMemcpy3DAsync_v2_ptsz(const CUDA_MEMCPY3D* p, CUstream s);

}  // namespace phos::hijack
