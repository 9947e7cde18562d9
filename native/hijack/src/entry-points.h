// The driver entry points libphos knows, as X-macro lists of (exported name, cudaTypedefs.h PFN type).
// The exported name is the ABI contract (interception.md §1): a wrapper exported as cuMemAlloc_v2
// implements exactly that ABI. WRAPPED: exported by libphos (exports.cpp) and substituted in dlsym and
// cuGetProcAddress answers. DRIVER_ONLY: resolved for libphos's own use, never exported.
#pragma once
#include <cuda.h>
#include <cudaTypedefs.h>

// cuda.h maps the base name to the 5-argument ABI; libphos also exports the 4-argument legacy one.
#undef cuGetProcAddress

#define PHOS_WRAPPED_ENTRY_POINTS(X)                                        \
  X(cuGetProcAddress, PFN_cuGetProcAddress_v11030)                          \
  X(cuGetProcAddress_v2, PFN_cuGetProcAddress_v12000)                       \
  X(cuGraphLaunch, PFN_cuGraphLaunch_v10000)                                \
  X(cuGraphLaunch_ptsz, PFN_cuGraphLaunch_v10000_ptsz)                      \
  X(cuInit, PFN_cuInit_v2000)                                               \
  X(cuLaunchCooperativeKernel, PFN_cuLaunchCooperativeKernel_v9000)         \
  X(cuLaunchCooperativeKernel_ptsz, PFN_cuLaunchCooperativeKernel_v9000_ptsz)\
  X(cuLaunchKernel, PFN_cuLaunchKernel_v4000)                               \
  X(cuLaunchKernelEx, PFN_cuLaunchKernelEx_v11060)                          \
  X(cuLaunchKernelEx_ptsz, PFN_cuLaunchKernelEx_v11060_ptsz)                \
  X(cuLaunchKernel_ptsz, PFN_cuLaunchKernel_v7000_ptsz)                     \
  X(cuLibraryGetKernel, PFN_cuLibraryGetKernel_v12000)                      \
  X(cuLibraryUnload, PFN_cuLibraryUnload_v12000)                            \
  X(cuMemAddressFree, PFN_cuMemAddressFree_v10020)                          \
  X(cuMemAddressReserve, PFN_cuMemAddressReserve_v10020)                    \
  X(cuMemAllocAsync, PFN_cuMemAllocAsync_v11020)                            \
  X(cuMemAllocAsync_ptsz, PFN_cuMemAllocAsync_v11020_ptsz)                  \
  X(cuMemAllocFromPoolAsync, PFN_cuMemAllocFromPoolAsync_v11020)            \
  X(cuMemAllocFromPoolAsync_ptsz, PFN_cuMemAllocFromPoolAsync_v11020_ptsz)  \
  X(cuMemAllocPitch_v2, PFN_cuMemAllocPitch_v3020)                          \
  X(cuMemAlloc_v2, PFN_cuMemAlloc_v3020)                                    \
  X(cuMemCreate, PFN_cuMemCreate_v10020)                                    \
  X(cuMemFreeAsync, PFN_cuMemFreeAsync_v11020)                              \
  X(cuMemFreeAsync_ptsz, PFN_cuMemFreeAsync_v11020_ptsz)                    \
  X(cuMemFree_v2, PFN_cuMemFree_v3020)                                      \
  X(cuMemGetAddressRange_v2, PFN_cuMemGetAddressRange_v3020)                \
  X(cuMemGetInfo_v2, PFN_cuMemGetInfo_v3020)                                \
  X(cuMemMap, PFN_cuMemMap_v10020)                                          \
  X(cuMemRelease, PFN_cuMemRelease_v10020)                                  \
  X(cuMemSetAccess, PFN_cuMemSetAccess_v10020)                              \
  X(cuMemUnmap, PFN_cuMemUnmap_v10020)                                      \
  X(cuMemcpy, PFN_cuMemcpy_v4000)                                           \
  X(cuMemcpy2DAsync_v2, PFN_cuMemcpy2DAsync_v3020)                          \
  X(cuMemcpy2DAsync_v2_ptsz, PFN_cuMemcpy2DAsync_v7000_ptsz)                \
  X(cuMemcpy2DUnaligned_v2, PFN_cuMemcpy2DUnaligned_v3020)                  \
  X(cuMemcpy2DUnaligned_v2_ptds, PFN_cuMemcpy2DUnaligned_v7000_ptds)        \
  X(cuMemcpy2D_v2, PFN_cuMemcpy2D_v3020)                                    \
  X(cuMemcpy2D_v2_ptds, PFN_cuMemcpy2D_v7000_ptds)                          \
  X(cuMemcpy3DAsync_v2, PFN_cuMemcpy3DAsync_v3020)                          \
  X(cuMemcpy3DAsync_v2_ptsz, PFN_cuMemcpy3DAsync_v7000_ptsz)                \
  X(cuMemcpy3D_v2, PFN_cuMemcpy3D_v3020)                                    \
  X(cuMemcpy3D_v2_ptds, PFN_cuMemcpy3D_v7000_ptds)                          \
  X(cuMemcpyAsync, PFN_cuMemcpyAsync_v4000)                                 \
  X(cuMemcpyAsync_ptsz, PFN_cuMemcpyAsync_v7000_ptsz)                       \
  X(cuMemcpyDtoDAsync_v2, PFN_cuMemcpyDtoDAsync_v3020)                      \
  X(cuMemcpyDtoDAsync_v2_ptsz, PFN_cuMemcpyDtoDAsync_v7000_ptsz)            \
  X(cuMemcpyDtoD_v2, PFN_cuMemcpyDtoD_v3020)                                \
  X(cuMemcpyDtoD_v2_ptds, PFN_cuMemcpyDtoD_v7000_ptds)                      \
  X(cuMemcpyDtoHAsync_v2, PFN_cuMemcpyDtoHAsync_v3020)                      \
  X(cuMemcpyDtoHAsync_v2_ptsz, PFN_cuMemcpyDtoHAsync_v7000_ptsz)            \
  X(cuMemcpyDtoH_v2, PFN_cuMemcpyDtoH_v3020)                                \
  X(cuMemcpyDtoH_v2_ptds, PFN_cuMemcpyDtoH_v7000_ptds)                      \
  X(cuMemcpyHtoDAsync_v2, PFN_cuMemcpyHtoDAsync_v3020)                      \
  X(cuMemcpyHtoDAsync_v2_ptsz, PFN_cuMemcpyHtoDAsync_v7000_ptsz)            \
  X(cuMemcpyHtoD_v2, PFN_cuMemcpyHtoD_v3020)                                \
  X(cuMemcpyHtoD_v2_ptds, PFN_cuMemcpyHtoD_v7000_ptds)                      \
  X(cuMemcpyPeer, PFN_cuMemcpyPeer_v4000)                                   \
  X(cuMemcpyPeerAsync, PFN_cuMemcpyPeerAsync_v4000)                         \
  X(cuMemcpyPeerAsync_ptsz, PFN_cuMemcpyPeerAsync_v7000_ptsz)               \
  X(cuMemcpyPeer_ptds, PFN_cuMemcpyPeer_v7000_ptds)                         \
  X(cuMemcpy_ptds, PFN_cuMemcpy_v7000_ptds)                                 \
  X(cuMemsetD16Async, PFN_cuMemsetD16Async_v3020)                           \
  X(cuMemsetD16Async_ptsz, PFN_cuMemsetD16Async_v7000_ptsz)                 \
  X(cuMemsetD16_v2, PFN_cuMemsetD16_v3020)                                  \
  X(cuMemsetD16_v2_ptds, PFN_cuMemsetD16_v7000_ptds)                        \
  X(cuMemsetD2D16Async, PFN_cuMemsetD2D16Async_v3020)                       \
  X(cuMemsetD2D16Async_ptsz, PFN_cuMemsetD2D16Async_v7000_ptsz)             \
  X(cuMemsetD2D16_v2, PFN_cuMemsetD2D16_v3020)                              \
  X(cuMemsetD2D16_v2_ptds, PFN_cuMemsetD2D16_v7000_ptds)                    \
  X(cuMemsetD2D32Async, PFN_cuMemsetD2D32Async_v3020)                       \
  X(cuMemsetD2D32Async_ptsz, PFN_cuMemsetD2D32Async_v7000_ptsz)             \
  X(cuMemsetD2D32_v2, PFN_cuMemsetD2D32_v3020)                              \
  X(cuMemsetD2D32_v2_ptds, PFN_cuMemsetD2D32_v7000_ptds)                    \
  X(cuMemsetD2D8Async, PFN_cuMemsetD2D8Async_v3020)                         \
  X(cuMemsetD2D8Async_ptsz, PFN_cuMemsetD2D8Async_v7000_ptsz)               \
  X(cuMemsetD2D8_v2, PFN_cuMemsetD2D8_v3020)                                \
  X(cuMemsetD2D8_v2_ptds, PFN_cuMemsetD2D8_v7000_ptds)                      \
  X(cuMemsetD32Async, PFN_cuMemsetD32Async_v3020)                           \
  X(cuMemsetD32Async_ptsz, PFN_cuMemsetD32Async_v7000_ptsz)                 \
  X(cuMemsetD32_v2, PFN_cuMemsetD32_v3020)                                  \
  X(cuMemsetD32_v2_ptds, PFN_cuMemsetD32_v7000_ptds)                        \
  X(cuMemsetD8Async, PFN_cuMemsetD8Async_v3020)                             \
  X(cuMemsetD8Async_ptsz, PFN_cuMemsetD8Async_v7000_ptsz)                   \
  X(cuMemsetD8_v2, PFN_cuMemsetD8_v3020)                                    \
  X(cuMemsetD8_v2_ptds, PFN_cuMemsetD8_v7000_ptds)                          \
  X(cuModuleUnload, PFN_cuModuleUnload_v2000)                               \
  X(cuPointerGetAttribute, PFN_cuPointerGetAttribute_v4000)                 \
  X(cuPointerGetAttributes, PFN_cuPointerGetAttributes_v7000)

#define PHOS_DRIVER_ONLY_ENTRY_POINTS(X)                                    \
  X(cuCtxGetCurrent, PFN_cuCtxGetCurrent_v4000)                             \
  X(cuCtxGetDevice, PFN_cuCtxGetDevice_v2000)                               \
  X(cuCtxGetLimit, PFN_cuCtxGetLimit_v3010)                                 \
  X(cuCtxGetStreamPriorityRange, PFN_cuCtxGetStreamPriorityRange_v5050)     \
  X(cuCtxSetCurrent, PFN_cuCtxSetCurrent_v4000)                             \
  X(cuCtxSetLimit, PFN_cuCtxSetLimit_v3010)                                 \
  X(cuCtxSynchronize, PFN_cuCtxSynchronize_v2000)                           \
  X(cuDeviceCanAccessPeer, PFN_cuDeviceCanAccessPeer_v4000)                 \
  X(cuDeviceGet, PFN_cuDeviceGet_v2000)                                     \
  X(cuDeviceGetCount, PFN_cuDeviceGetCount_v2000)                           \
  X(cuDeviceGetUuid_v2, PFN_cuDeviceGetUuid_v11040)                         \
  X(cuFuncGetParamInfo, PFN_cuFuncGetParamInfo_v12040)                      \
  X(cuKernelGetParamInfo, PFN_cuKernelGetParamInfo_v12040)                  \
  X(cuMemExportToShareableHandle, PFN_cuMemExportToShareableHandle_v10020)  \
  X(cuMemImportFromShareableHandle, PFN_cuMemImportFromShareableHandle_v10020) \
  X(cuMemGetAllocationGranularity, PFN_cuMemGetAllocationGranularity_v10020) \
  X(cuModuleGetFunction, PFN_cuModuleGetFunction_v2000)                     \
  X(cuModuleLoadData, PFN_cuModuleLoadData_v2000)                           \
  X(cuStreamCreate, PFN_cuStreamCreate_v2000)                               \
  X(cuStreamCreateWithPriority, PFN_cuStreamCreateWithPriority_v5050)       \
  X(cuStreamIsCapturing, PFN_cuStreamIsCapturing_v10000)                    \
  X(cuStreamIsCapturing_ptsz, PFN_cuStreamIsCapturing_v10000_ptsz)          \
  X(cuStreamSynchronize, PFN_cuStreamSynchronize_v2000)                     \
  X(cuThreadExchangeStreamCaptureMode, PFN_cuThreadExchangeStreamCaptureMode_v10010)
