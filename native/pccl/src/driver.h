// The one place that loads the CUDA driver: dlopen("libcuda.so.1") (or $PHOS_LIBCUDA) on first use, a
// table of the entry points pccl calls resolved once, then cuInit(0). Real driver or cudasim alike.
// Everything else in pccl calls the driver only through driver().
#pragma once

#include <cuda.h>

#include <string>

#include "failure.h"

namespace phos::pccl {

#define PCCL_DRIVER_REQUIRED(X)          \
  X(cuInit)                              \
  X(cuGetErrorName)                      \
  X(cuGetErrorString)                    \
  X(cuDeviceGet)                         \
  X(cuDeviceGetCount)                    \
  X(cuDeviceCanAccessPeer)               \
  X(cuDevicePrimaryCtxRetain)            \
  X(cuCtxSetCurrent)                     \
  X(cuMemCreate)                         \
  X(cuMemRelease)                        \
  X(cuMemAddressReserve)                 \
  X(cuMemAddressFree)                    \
  X(cuMemMap)                            \
  X(cuMemUnmap)                          \
  X(cuMemSetAccess)                      \
  X(cuMemGetAllocationGranularity)       \
  X(cuMemImportFromShareableHandle)      \
  X(cuMemExportToShareableHandle)        \
  X(cuMemHostAlloc)                      \
  X(cuMemFreeHost)                       \
  X(cuMemcpyDtoH)                        \
  X(cuMemcpyHtoD)                        \
  X(cuMemcpyDtoD)

// Since CUDA 12.8 / driver 570; absent from older drivers, so checked at the call.
#define PCCL_DRIVER_OPTIONAL(X)          \
  X(cuCheckpointProcessGetState)         \
  X(cuCheckpointProcessLock)             \
  X(cuCheckpointProcessCheckpoint)       \
  X(cuCheckpointProcessRestore)          \
  X(cuCheckpointProcessUnlock)           \
  X(cuCheckpointProcessGetRestoreThreadId)

// cuda.h maps many names to versioned symbols (cuMemcpyDtoH -> cuMemcpyDtoH_v2); the member takes the
// macro-expanded name and the string looked up is the expanded one too.
#define PCCL_DRIVER_MEMBER(name) decltype(&::name) name = nullptr;

struct Driver {
  std::string path;  // what was dlopen()ed
  PCCL_DRIVER_REQUIRED(PCCL_DRIVER_MEMBER)
  PCCL_DRIVER_OPTIONAL(PCCL_DRIVER_MEMBER)
};

// The loaded, initialised driver. pre: none. Throws Failure(DRIVER_FAILED) when libcuda cannot be loaded,
// lacks a required entry point, or cuInit fails; the next call tries again.
const Driver& driver();

// "CUDA_ERROR_INVALID_VALUE" (or "CUresult 123" when the driver has no name for it).
std::string cu_error_name(CUresult r);

// Throws Failure(DRIVER_FAILED) "<call> failed: <NAME> (<description>)<context>" unless r is CUDA_SUCCESS.
void cu_check(CUresult r, const char* call, const std::string& context = "");

}  // namespace phos::pccl
