// Copies and memsets. Every one is an op on a stream, so it is ordered with kernels like on a GPU.
// Host-side rules follow CUDA: sync calls wait; async H->D from pageable memory stages the source
// before returning; async D->H into pageable memory completes before returning; pinned memory
// keeps both truly asynchronous.
#include <cstring>
#include <memory>
#include <vector>

#include "memory.h"
#include "stream.h"

using namespace phos::cudasim;

namespace {

enum class Mode { sync, async };

struct Copy {
  void *dst;
  const void *src;
  size_t n;
  bool dst_device;
  bool src_device;
};

CUresult check(const Copy &c) {
  if (c.dst_device && !memory::is_device(reinterpret_cast<uintptr_t>(c.dst), c.n))
    return CUDA_ERROR_INVALID_VALUE;
  if (c.src_device && !memory::is_device(reinterpret_cast<uintptr_t>(c.src), c.n))
    return CUDA_ERROR_INVALID_VALUE;
  return CUDA_SUCCESS;
}

void enqueue_async(CUstream_st *s, const Copy &c) {
  if (!c.src_device && !memory::is_pinned_host(c.src, c.n)) {
    // Pageable source: stage it now so the caller may reuse its buffer on return.
    auto staged = std::make_shared<std::vector<unsigned char>>(
        static_cast<const unsigned char *>(c.src), static_cast<const unsigned char *>(c.src) + c.n);
    submit(s, [dst = c.dst, staged] { memcpy(dst, staged->data(), staged->size()); });
    return;
  }
  auto op = [c] { memmove(c.dst, c.src, c.n); };
  if (!c.dst_device && !memory::is_pinned_host(c.dst, c.n)) submit_and_wait(s, op);  // pageable dst
  else submit(s, op);
}

CUresult copy(const Copy &c, CUstream h, bool per_thread, Mode mode) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (c.n == 0) return CUDA_SUCCESS;
  if (CUresult r = check(c)) return r;
  CUstream_st *s;
  if (CUresult r = resolve_stream(h, per_thread, &s)) return r;
  if (mode == Mode::sync) submit_and_wait(s, [c] { memmove(c.dst, c.src, c.n); });
  else enqueue_async(s, c);
  return CUDA_SUCCESS;
}

void *ptr(CUdeviceptr d) { return reinterpret_cast<void *>(d); }

// Unified addressing: the kind of each side is looked up.
Copy unified(CUdeviceptr dst, CUdeviceptr src, size_t n) {
  return Copy{ptr(dst), ptr(src), n, memory::is_device(dst, n), memory::is_device(src, n)};
}

template <typename T>
CUresult memset_n(CUdeviceptr dst, size_t pitch, T value, size_t width, size_t height, CUstream h,
                  bool per_thread, Mode mode) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (dst % sizeof(T) || (height > 1 && pitch % sizeof(T))) return CUDA_ERROR_INVALID_VALUE;
  if (width == 0 || height == 0) return CUDA_SUCCESS;
  size_t row = width * sizeof(T);
  if (height > 1 && pitch < row) return CUDA_ERROR_INVALID_VALUE;
  if (!memory::is_device(dst, pitch * (height - 1) + row)) return CUDA_ERROR_INVALID_VALUE;
  CUstream_st *s;
  if (CUresult r = resolve_stream(h, per_thread, &s)) return r;
  auto op = [=] {
    for (size_t y = 0; y < height; y++) {
      T *p = reinterpret_cast<T *>(dst + y * pitch);
      if constexpr (sizeof(T) == 1) memset(p, value, width);
      else for (size_t i = 0; i < width; i++) p[i] = value;
    }
  };
  if (mode == Mode::sync) submit_and_wait(s, op);
  else submit(s, op);
  return CUDA_SUCCESS;
}

const void *side(CUmemorytype t, const void *host, CUdeviceptr dev, size_t x, size_t y, size_t pitch,
                 bool *device) {
  *device = t == CU_MEMORYTYPE_DEVICE || (t == CU_MEMORYTYPE_UNIFIED && memory::is_device(dev, 1));
  auto base = reinterpret_cast<uintptr_t>(t == CU_MEMORYTYPE_HOST ? host : ptr(dev));
  return reinterpret_cast<const void *>(base + y * pitch + x);
}

CUresult copy_2d(const CUDA_MEMCPY2D *p, CUstream h, bool per_thread, Mode mode) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (!p) return CUDA_ERROR_INVALID_VALUE;
  if (p->srcMemoryType == CU_MEMORYTYPE_ARRAY || p->dstMemoryType == CU_MEMORYTYPE_ARRAY)
    return CUDA_ERROR_NOT_SUPPORTED;  // CUDA arrays are not simulated
  bool sdev, ddev;
  auto *src = static_cast<const unsigned char *>(
      side(p->srcMemoryType, p->srcHost, p->srcDevice, p->srcXInBytes, p->srcY, p->srcPitch, &sdev));
  auto *dst = const_cast<unsigned char *>(static_cast<const unsigned char *>(
      side(p->dstMemoryType, p->dstHost, p->dstDevice, p->dstXInBytes, p->dstY, p->dstPitch, &ddev)));
  size_t w = p->WidthInBytes, hgt = p->Height, sp = p->srcPitch ? p->srcPitch : w,
         dp = p->dstPitch ? p->dstPitch : w;
  if (hgt == 0 || w == 0) return CUDA_SUCCESS;
  if ((hgt > 1 && (sp < w || dp < w)) ||
      (sdev && !memory::is_device(reinterpret_cast<uintptr_t>(src), sp * (hgt - 1) + w)) ||
      (ddev && !memory::is_device(reinterpret_cast<uintptr_t>(dst), dp * (hgt - 1) + w)))
    return CUDA_ERROR_INVALID_VALUE;
  CUstream_st *s;
  if (CUresult r = resolve_stream(h, per_thread, &s)) return r;
  auto op = [=] {
    for (size_t y = 0; y < hgt; y++) memmove(dst + y * dp, src + y * sp, w);
  };
  // 2D copies with pageable memory are treated as synchronous: staging a strided source is not
  // worth it for the sim.
  bool pinned = (sdev || memory::is_pinned_host(src, 1)) && (ddev || memory::is_pinned_host(dst, 1));
  if (mode == Mode::sync || !pinned) submit_and_wait(s, op);
  else submit(s, op);
  return CUDA_SUCCESS;
}

// cuMemcpyPeer(Async): both sides device memory, both contexts valid. Peer access need not be enabled
// (the driver stages through the host then); on the sim every copy is a CPU memmove either way.
CUresult peer(CUdeviceptr d, CUcontext dc, CUdeviceptr s, CUcontext sc, size_t n, CUstream st,
              bool per_thread, Mode mode) {
  if (CUresult r = require_init()) return r;
  if (!has_magic(dc, Magic::context) || !has_magic(sc, Magic::context)) return CUDA_ERROR_INVALID_CONTEXT;
  return copy({ptr(d), ptr(s), n, true, true}, st, per_thread, mode);
}

}  // namespace

// clang-format off
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void *h, size_t n) { return copy({ptr(d), h, n, true, false}, nullptr, false, Mode::sync); }
CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr d, const void *h, size_t n) { return copy({ptr(d), h, n, true, false}, nullptr, true, Mode::sync); }
CUresult cuMemcpyDtoH_v2(void *h, CUdeviceptr d, size_t n) { return copy({h, ptr(d), n, false, true}, nullptr, false, Mode::sync); }
CUresult cuMemcpyDtoH_v2_ptds(void *h, CUdeviceptr d, size_t n) { return copy({h, ptr(d), n, false, true}, nullptr, true, Mode::sync); }
CUresult cuMemcpyDtoD_v2(CUdeviceptr d, CUdeviceptr s, size_t n) { return copy({ptr(d), ptr(s), n, true, true}, nullptr, false, Mode::sync); }
CUresult cuMemcpyDtoD_v2_ptds(CUdeviceptr d, CUdeviceptr s, size_t n) { return copy({ptr(d), ptr(s), n, true, true}, nullptr, true, Mode::sync); }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *h, size_t n, CUstream st) { return copy({ptr(d), h, n, true, false}, st, false, Mode::async); }
CUresult cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr d, const void *h, size_t n, CUstream st) { return copy({ptr(d), h, n, true, false}, st, true, Mode::async); }
CUresult cuMemcpyDtoHAsync_v2(void *h, CUdeviceptr d, size_t n, CUstream st) { return copy({h, ptr(d), n, false, true}, st, false, Mode::async); }
CUresult cuMemcpyDtoHAsync_v2_ptsz(void *h, CUdeviceptr d, size_t n, CUstream st) { return copy({h, ptr(d), n, false, true}, st, true, Mode::async); }
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream st) { return copy({ptr(d), ptr(s), n, true, true}, st, false, Mode::async); }
CUresult cuMemcpyDtoDAsync_v2_ptsz(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream st) { return copy({ptr(d), ptr(s), n, true, true}, st, true, Mode::async); }
CUresult cuMemcpy(CUdeviceptr d, CUdeviceptr s, size_t n) { return copy(unified(d, s, n), nullptr, false, Mode::sync); }
CUresult cuMemcpy_ptds(CUdeviceptr d, CUdeviceptr s, size_t n) { return copy(unified(d, s, n), nullptr, true, Mode::sync); }
CUresult cuMemcpyAsync(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream st) { return copy(unified(d, s, n), st, false, Mode::async); }
CUresult cuMemcpyAsync_ptsz(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream st) { return copy(unified(d, s, n), st, true, Mode::async); }
CUresult cuMemcpyPeer(CUdeviceptr d, CUcontext dc, CUdeviceptr s, CUcontext sc, size_t n) { return peer(d, dc, s, sc, n, nullptr, false, Mode::sync); }
CUresult cuMemcpyPeer_ptds(CUdeviceptr d, CUcontext dc, CUdeviceptr s, CUcontext sc, size_t n) { return peer(d, dc, s, sc, n, nullptr, true, Mode::sync); }
CUresult cuMemcpyPeerAsync(CUdeviceptr d, CUcontext dc, CUdeviceptr s, CUcontext sc, size_t n, CUstream st) { return peer(d, dc, s, sc, n, st, false, Mode::async); }
CUresult cuMemcpyPeerAsync_ptsz(CUdeviceptr d, CUcontext dc, CUdeviceptr s, CUcontext sc, size_t n, CUstream st) { return peer(d, dc, s, sc, n, st, true, Mode::async); }

CUresult cuMemcpy2D_v2(const CUDA_MEMCPY2D *p) { return copy_2d(p, nullptr, false, Mode::sync); }
CUresult cuMemcpy2D_v2_ptds(const CUDA_MEMCPY2D *p) { return copy_2d(p, nullptr, true, Mode::sync); }
CUresult cuMemcpy2DUnaligned_v2(const CUDA_MEMCPY2D *p) { return copy_2d(p, nullptr, false, Mode::sync); }
CUresult cuMemcpy2DUnaligned_v2_ptds(const CUDA_MEMCPY2D *p) { return copy_2d(p, nullptr, true, Mode::sync); }
CUresult cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D *p, CUstream st) { return copy_2d(p, st, false, Mode::async); }
CUresult cuMemcpy2DAsync_v2_ptsz(const CUDA_MEMCPY2D *p, CUstream st) { return copy_2d(p, st, true, Mode::async); }

CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, size_t n) { return memset_n<uint8_t>(d, 0, v, n, 1, nullptr, false, Mode::sync); }
CUresult cuMemsetD8_v2_ptds(CUdeviceptr d, unsigned char v, size_t n) { return memset_n<uint8_t>(d, 0, v, n, 1, nullptr, true, Mode::sync); }
CUresult cuMemsetD16_v2(CUdeviceptr d, unsigned short v, size_t n) { return memset_n<uint16_t>(d, 0, v, n, 1, nullptr, false, Mode::sync); }
CUresult cuMemsetD16_v2_ptds(CUdeviceptr d, unsigned short v, size_t n) { return memset_n<uint16_t>(d, 0, v, n, 1, nullptr, true, Mode::sync); }
CUresult cuMemsetD32_v2(CUdeviceptr d, unsigned int v, size_t n) { return memset_n<uint32_t>(d, 0, v, n, 1, nullptr, false, Mode::sync); }
CUresult cuMemsetD32_v2_ptds(CUdeviceptr d, unsigned int v, size_t n) { return memset_n<uint32_t>(d, 0, v, n, 1, nullptr, true, Mode::sync); }
CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream s) { return memset_n<uint8_t>(d, 0, v, n, 1, s, false, Mode::async); }
CUresult cuMemsetD8Async_ptsz(CUdeviceptr d, unsigned char v, size_t n, CUstream s) { return memset_n<uint8_t>(d, 0, v, n, 1, s, true, Mode::async); }
CUresult cuMemsetD16Async(CUdeviceptr d, unsigned short v, size_t n, CUstream s) { return memset_n<uint16_t>(d, 0, v, n, 1, s, false, Mode::async); }
CUresult cuMemsetD16Async_ptsz(CUdeviceptr d, unsigned short v, size_t n, CUstream s) { return memset_n<uint16_t>(d, 0, v, n, 1, s, true, Mode::async); }
CUresult cuMemsetD32Async(CUdeviceptr d, unsigned int v, size_t n, CUstream s) { return memset_n<uint32_t>(d, 0, v, n, 1, s, false, Mode::async); }
CUresult cuMemsetD32Async_ptsz(CUdeviceptr d, unsigned int v, size_t n, CUstream s) { return memset_n<uint32_t>(d, 0, v, n, 1, s, true, Mode::async); }
CUresult cuMemsetD2D8_v2(CUdeviceptr d, size_t p, unsigned char v, size_t w, size_t h) { return memset_n<uint8_t>(d, p, v, w, h, nullptr, false, Mode::sync); }
CUresult cuMemsetD2D8_v2_ptds(CUdeviceptr d, size_t p, unsigned char v, size_t w, size_t h) { return memset_n<uint8_t>(d, p, v, w, h, nullptr, true, Mode::sync); }
CUresult cuMemsetD2D16_v2(CUdeviceptr d, size_t p, unsigned short v, size_t w, size_t h) { return memset_n<uint16_t>(d, p, v, w, h, nullptr, false, Mode::sync); }
CUresult cuMemsetD2D16_v2_ptds(CUdeviceptr d, size_t p, unsigned short v, size_t w, size_t h) { return memset_n<uint16_t>(d, p, v, w, h, nullptr, true, Mode::sync); }
CUresult cuMemsetD2D32_v2(CUdeviceptr d, size_t p, unsigned int v, size_t w, size_t h) { return memset_n<uint32_t>(d, p, v, w, h, nullptr, false, Mode::sync); }
CUresult cuMemsetD2D32_v2_ptds(CUdeviceptr d, size_t p, unsigned int v, size_t w, size_t h) { return memset_n<uint32_t>(d, p, v, w, h, nullptr, true, Mode::sync); }
CUresult cuMemsetD2D8Async(CUdeviceptr d, size_t p, unsigned char v, size_t w, size_t h, CUstream s) { return memset_n<uint8_t>(d, p, v, w, h, s, false, Mode::async); }
CUresult cuMemsetD2D8Async_ptsz(CUdeviceptr d, size_t p, unsigned char v, size_t w, size_t h, CUstream s) { return memset_n<uint8_t>(d, p, v, w, h, s, true, Mode::async); }
CUresult cuMemsetD2D16Async(CUdeviceptr d, size_t p, unsigned short v, size_t w, size_t h, CUstream s) { return memset_n<uint16_t>(d, p, v, w, h, s, false, Mode::async); }
CUresult cuMemsetD2D16Async_ptsz(CUdeviceptr d, size_t p, unsigned short v, size_t w, size_t h, CUstream s) { return memset_n<uint16_t>(d, p, v, w, h, s, true, Mode::async); }
CUresult cuMemsetD2D32Async(CUdeviceptr d, size_t p, unsigned int v, size_t w, size_t h, CUstream s) { return memset_n<uint32_t>(d, p, v, w, h, s, false, Mode::async); }
CUresult cuMemsetD2D32Async_ptsz(CUdeviceptr d, size_t p, unsigned int v, size_t w, size_t h, CUstream s) { return memset_n<uint32_t>(d, p, v, w, h, s, true, Mode::async); }
// clang-format on
