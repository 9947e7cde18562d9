// Memory helpers shared by memory.cpp, copy.cpp and launch.cpp.
#pragma once

#include "internal.h"

namespace phos::cudasim::memory {

// True when [p, p+n) lies in page-locked host memory (cuMemHostAlloc / cuMemHostRegister): async
// copies from or to it stay asynchronous; pageable memory makes them stage or block, as in CUDA.
bool is_pinned_host(const void *p, size_t n);
// True when [p, p+n) is accessible device memory.
bool is_device(uintptr_t p, size_t n);
// cuMemAlloc/cuMemFree without the gate or context checks (module globals use them too).
CUresult alloc_device(size_t bytes, CUdeviceptr *dptr);
CUresult free_device(CUdeviceptr dptr);

}  // namespace phos::cudasim::memory
