// The two doors besides the exported names: the dlsym hook and the cuGetProcAddress answers.
#pragma once
#include <atomic>
#include <cstdint>

#include <cuda.h>

namespace phos::hijack {

/// dlsym as the app sees it: glibc's answer, with cu* names we wrap replaced by our wrapper when glibc
/// found the name at all. RTLD_NEXT is resolved relative to `caller`, not to libphos.
void* dlsym_hook(void* handle, const char* name, const void* caller);

/// cuGetProcAddress_v2 / cuGetProcAddress (4-argument): the real answer, then real address -> wrapper.
CUresult proc_address_v2(const char* symbol, void** pfn, int version, cuuint64_t flags,
                         CUdriverProcAddressQueryResult* status);
CUresult proc_address_v1(const char* symbol, void** pfn, int version, cuuint64_t flags);

/// Counters for the H200 acceptance script: queries answered, and how many got a wrapper.
struct InterposeStats {
  std::atomic<uint64_t> proc_queries{0};
  std::atomic<uint64_t> proc_wrapped{0};
  std::atomic<uint64_t> dlsym_wrapped{0};
};
extern InterposeStats g_interpose_stats;

}  // namespace phos::hijack
