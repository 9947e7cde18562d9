// Resolves the real driver once: dlopen("libcuda.so.1") and glibc's dlsym for every entry in
// entry-points.h, then builds the table real address -> wrapper used to answer cuGetProcAddress. The
// table is written before the ready state is published (release) and never changes afterwards.
#include "driver.h"

#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "log.h"

namespace phos::hijack {

Driver g_drv;

namespace {

using DlsymFn = void* (*)(void*, const char*);
std::atomic<DlsymFn> g_real_dlsym{nullptr};

std::atomic<int> g_state{0};  // 0 not loaded, 1 loading, 2 ready, 3 failed
thread_local bool t_loading = false;

struct RealToWrapper {
  void* real;
  void* wrapper;
};
constexpr size_t kMaxMap = 64;
RealToWrapper g_map[kMaxMap];
size_t g_map_n = 0;

bool is_our_wrapper(void* p) {
  size_t n;
  const WrappedEntry* e = wrapped_entries(&n);
  for (size_t i = 0; i < n; ++i)
    if (e[i].fn == p) return true;
  return false;
}

bool load() {
  void* h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  if (!h) h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    PHOS_LOG_CAPPED(1, error, "cannot load libcuda.so.1 (%s): every wrapper answers CUDA_ERROR_NOT_INITIALIZED",
                    dlerror());
    return false;
  }
  Driver t{};
#define PHOS_X(name, pfn)                                                   \
  t.name = reinterpret_cast<pfn>(real_dlsym(h, #name));                     \
  if (t.name && is_our_wrapper(reinterpret_cast<void*>(t.name))) t.name = nullptr;
  PHOS_WRAPPED_ENTRY_POINTS(PHOS_X)
  PHOS_DRIVER_ONLY_ENTRY_POINTS(PHOS_X)
#undef PHOS_X
  // Map every exported versioned symbol we wrap from its real address to our wrapper.
  size_t n;
  const WrappedEntry* e = wrapped_entries(&n);
  size_t m = 0;
  for (size_t i = 0; i < n && m < kMaxMap; ++i) {
    void* r = real_dlsym(h, e[i].name);
    if (r && r != e[i].fn) g_map[m++] = {r, e[i].fn};
  }
  std::sort(g_map, g_map + m, [](const RealToWrapper& a, const RealToWrapper& b) { return a.real < b.real; });
  g_map_n = m;
  // Publish pointer by pointer: a concurrent real() that sees one non-null may call it at once.
#define PHOS_X(name, pfn) __atomic_store_n(&g_drv.name, t.name, __ATOMIC_RELEASE);
  PHOS_WRAPPED_ENTRY_POINTS(PHOS_X)
  PHOS_DRIVER_ONLY_ENTRY_POINTS(PHOS_X)
#undef PHOS_X
  PHOS_LOG(debug, "driver loaded: %zu wrapped entry points mapped", m);
  return true;
}

}  // namespace

void* real_dlsym(void* handle, const char* name) {
  DlsymFn f = g_real_dlsym.load(std::memory_order_acquire);
  if (!f) {
    f = reinterpret_cast<DlsymFn>(dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34"));
    if (!f) f = reinterpret_cast<DlsymFn>(dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5"));
    if (!f) return nullptr;
    g_real_dlsym.store(f, std::memory_order_release);
  }
  return f(handle, name);
}

const Driver& driver_slow() {
  int s = g_state.load(std::memory_order_acquire);
  if (s >= 2 || t_loading) return g_drv;
  int expected = 0;
  if (g_state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    t_loading = true;
    bool ok = load();
    t_loading = false;
    g_state.store(ok ? 2 : 3, std::memory_order_release);
  } else {
    while (g_state.load(std::memory_order_acquire) == 1) sched_yield();
  }
  return g_drv;
}

void* wrapper_for_real(void* p) {
  if (!p || g_state.load(std::memory_order_acquire) != 2) return p;
  size_t lo = 0, hi = g_map_n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (g_map[mid].real < p) lo = mid + 1;
    else hi = mid;
  }
  if (lo < g_map_n && g_map[lo].real == p) return g_map[lo].wrapper;
  return p;
}

void* wrapper_by_name(const char* name) {
  size_t n;
  const WrappedEntry* e = wrapped_entries(&n);
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(e[mid].name, name);
    if (c == 0) return e[mid].fn;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return nullptr;
}

}  // namespace phos::hijack
