// dlsym override and cuGetProcAddress translation (interception.md §3). Nothing here initialises the
// driver or talks to the agent: both are called re-entrantly by NVML/CUPTI and by cudart's ~440-query
// table fill, so they do a glibc call, a binary search and nothing else.
#include "interpose.h"

#include <dlfcn.h>
#include <link.h>

#include "driver.h"
#include "log.h"

namespace phos::hijack {

InterposeStats g_interpose_stats;

namespace {

// glibc's own dlopen/dlclose: a preloaded sanitizer runtime intercepts them and calls our dlsym before
// its own pointers are set, so going through the interceptors from here would crash.
using DlopenFn = void* (*)(const char*, int);
using DlcloseFn = int (*)(void*);
template <typename F>
F libc_fn(std::atomic<F>& cache, const char* name) {
  F f = cache.load(std::memory_order_acquire);
  if (f) return f;
  f = reinterpret_cast<F>(dlvsym(RTLD_NEXT, name, "GLIBC_2.34"));
  if (!f) f = reinterpret_cast<F>(dlvsym(RTLD_NEXT, name, "GLIBC_2.2.5"));
  cache.store(f, std::memory_order_release);
  return f;
}
std::atomic<DlopenFn> g_dlopen{nullptr};
std::atomic<DlcloseFn> g_dlclose{nullptr};

// RTLD_NEXT means "after the caller", but glibc sees libphos as the caller once we forward. Walk the
// link map after the caller's object and take the first object that itself defines the name.
void* next_after(const void* caller, const char* name) {
  Dl_info info;
  struct link_map* lm = nullptr;
  if (!caller || !dladdr1(caller, &info, reinterpret_cast<void**>(&lm), RTLD_DL_LINKMAP) || !lm)
    return real_dlsym(RTLD_NEXT, name);
  // Callers loaded before libphos (the main program, a sanitizer runtime preloaded ahead of us): the
  // objects after them are libphos and then exactly the objects after libphos, and libphos defines
  // only dlsym and the cu*/phos_hijack_* names, so glibc's answer for us is the right one. This path
  // allocates nothing, which matters when a sanitizer runtime calls it during its own init.
  Dl_info self_info;
  struct link_map* self = nullptr;
  if (dladdr1(reinterpret_cast<void*>(&next_after), &self_info, reinterpret_cast<void**>(&self), RTLD_DL_LINKMAP) &&
      self) {
    for (struct link_map* l = lm->l_next; l; l = l->l_next)
      if (l == self) return real_dlsym(RTLD_NEXT, name);
  }
  for (struct link_map* l = lm->l_next; l; l = l->l_next) {
    if (!l->l_name || !l->l_name[0]) continue;
    // A proper handle (not the link_map itself: the vDSO's map has no lookup scope).
    DlopenFn op = libc_fn(g_dlopen, "dlopen");
    DlcloseFn cl = libc_fn(g_dlclose, "dlclose");
    if (!op || !cl) return nullptr;
    void* h = op(l->l_name, RTLD_LAZY | RTLD_NOLOAD);
    if (!h) continue;
    void* r = real_dlsym(h, name);
    cl(h);
    if (!r) continue;
    Dl_info ri;
    struct link_map* owner = nullptr;
    if (dladdr1(r, &ri, reinterpret_cast<void**>(&owner), RTLD_DL_LINKMAP) && owner == l) return r;
  }
  return nullptr;
}

inline bool is_cu_name(const char* name) { return name && name[0] == 'c' && name[1] == 'u'; }

}  // namespace

void* dlsym_hook(void* handle, const char* name, const void* caller) {
  void* r = handle == RTLD_NEXT ? next_after(caller, name) : real_dlsym(handle, name);
  if (r && is_cu_name(name)) {
    if (void* w = wrapper_by_name(name)) {
      g_interpose_stats.dlsym_wrapped.fetch_add(1, std::memory_order_relaxed);
      return w;
    }
  }
  return r;
}

CUresult proc_address_v2(const char* symbol, void** pfn, int version, cuuint64_t flags,
                         CUdriverProcAddressQueryResult* status) {
  auto f = real(&Driver::cuGetProcAddress_v2);
  if (!f) return CUDA_ERROR_NOT_INITIALIZED;
  CUresult r = f(symbol, pfn, version, flags, status);
  g_interpose_stats.proc_queries.fetch_add(1, std::memory_order_relaxed);
  if (r == CUDA_SUCCESS && pfn && *pfn) {
    void* w = wrapper_for_real(*pfn);
    if (w != *pfn) {
      *pfn = w;
      g_interpose_stats.proc_wrapped.fetch_add(1, std::memory_order_relaxed);
    }
  }
  PHOS_LOG(trace, "cuGetProcAddress_v2(%s, %d, %llu) = %d %p", symbol ? symbol : "(null)", version,
           (unsigned long long)flags, (int)r, pfn ? *pfn : nullptr);
  return r;
}

CUresult proc_address_v1(const char* symbol, void** pfn, int version, cuuint64_t flags) {
  auto f = real(&Driver::cuGetProcAddress);
  if (!f) return CUDA_ERROR_NOT_INITIALIZED;
  CUresult r = f(symbol, pfn, version, flags);
  g_interpose_stats.proc_queries.fetch_add(1, std::memory_order_relaxed);
  if (r == CUDA_SUCCESS && pfn && *pfn) {
    void* w = wrapper_for_real(*pfn);
    if (w != *pfn) {
      *pfn = w;
      g_interpose_stats.proc_wrapped.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return r;
}

}  // namespace phos::hijack
