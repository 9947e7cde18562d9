// The next driver: a table of real entry points resolved once from whichever libcuda.so.1 the loader
// finds (the NVIDIA driver or cudasim). Only driver.cpp resolves; everyone calls through real().
#pragma once
#include <cstddef>

#include "entry-points.h"

namespace phos::hijack {

struct Driver {
#define PHOS_X(name, pfn) pfn name;
  PHOS_WRAPPED_ENTRY_POINTS(PHOS_X)
  PHOS_DRIVER_ONLY_ENTRY_POINTS(PHOS_X)
#undef PHOS_X
};

extern Driver g_drv;

/// Loads the table if needed (once, re-entrancy safe) and returns it. Entries the driver lacks are null;
/// if libcuda.so.1 cannot be found every entry is null.
const Driver& driver_slow();

/// One real entry point. Fast path: one relaxed load of an already-filled pointer.
template <typename F>
inline F real(F Driver::*m) {
  F f = __atomic_load_n(&(g_drv.*m), __ATOMIC_RELAXED);
  if (__builtin_expect(f != nullptr, 1)) return f;
  return driver_slow().*m;
}

/// dlsym as glibc implements it (our exported dlsym is the hook).
void* real_dlsym(void* handle, const char* name);

/// The wrapper libphos substitutes for a real entry point address, or `p` itself.
void* wrapper_for_real(void* p);

/// The exported wrapper with this exact name, or null (binary search over the sorted export table).
void* wrapper_by_name(const char* name);

/// One exported wrapper: its name and address (exports.cpp owns the table, sorted by name).
struct WrappedEntry {
  const char* name;
  void* fn;
};
const WrappedEntry* wrapped_entries(size_t* count);

}  // namespace phos::hijack

// Calls the real `name`, or answers CUDA_ERROR_NOT_INITIALIZED when the driver has no such entry.
#define PHOS_REAL(name, ...)                                                           \
  ({                                                                                   \
    auto phos_f_ = ::phos::hijack::real(&::phos::hijack::Driver::name);                \
    phos_f_ ? phos_f_(__VA_ARGS__) : CUDA_ERROR_NOT_INITIALIZED;                       \
  })
