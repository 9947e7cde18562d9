// Launch tracking: per launch, while armed, every aligned 8-byte parameter word that falls in a present
// chunk marks that chunk's extent as speculated-written (DESIGN "core idea" 5). Parameter layouts come
// from cuFuncGetParamInfo / cuKernelGetParamInfo, cached per handle in a lock-free table. Disarmed, each
// hook is one relaxed load and a forward. Speculation orders work; the hash round decides correctness.
#include "launch-track.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "driver.h"
#include "gate.h"
#include "log.h"

namespace phos::hijack {

std::atomic<bool> g_track_armed{false};
TrackStats g_track_stats;

namespace {

// ---------------------------------------------------------------------------------------------------
// Chunk table
std::atomic<Chunk*> g_chunks{nullptr};
uint64_t g_base = 0;
uint64_t g_size = 0;
uint32_t g_nchunks = 0;
std::atomic<bool> g_spec_all{false};

// ---------------------------------------------------------------------------------------------------
// Parameter layouts, keyed by CUfunction (or CUkernel cast to CUfunction). Open addressing, keys are
// claimed with a CAS and never removed; an unload bumps the generation so stale layouts are recomputed.
struct Layout {
  uint32_t n;  // parameters; kUnknown when the driver could not tell
  struct P {
    uint32_t off, size;
  } p[1];
};
constexpr uint32_t kUnknown = ~0u;
constexpr size_t kSlots = 8192;
constexpr size_t kProbe = 64;
constexpr uint32_t kMaxParams = 4096;
struct Slot {
  std::atomic<uintptr_t> key{0};
  std::atomic<const Layout*> layout{nullptr};
  std::atomic<uint32_t> gen{0};
};
Slot g_layouts[kSlots];
Slot g_kernels[kSlots];  // CUkernel handles seen from cuLibraryGetKernel (layout unused)
std::atomic<uint32_t> g_gen{1};
const Layout g_unknown_layout{kUnknown, {{0, 0}}};

inline size_t slot_hash(uintptr_t k) { return static_cast<size_t>((k >> 4) * 0x9E3779B97F4A7C15ull >> 51) & (kSlots - 1); }

Slot* find_slot(Slot* table, uintptr_t key, bool claim) {
  size_t h = slot_hash(key);
  for (size_t i = 0; i < kProbe; ++i) {
    Slot& s = table[(h + i) & (kSlots - 1)];
    uintptr_t k = s.key.load(std::memory_order_acquire);
    if (k == key) return &s;
    if (k == 0) {
      if (!claim) return nullptr;
      uintptr_t expected = 0;
      if (s.key.compare_exchange_strong(expected, key, std::memory_order_acq_rel) || expected == key) return &s;
    }
  }
  return nullptr;
}

bool is_known_kernel(CUfunction f) { return find_slot(g_kernels, reinterpret_cast<uintptr_t>(f), false) != nullptr; }

// Asks the driver for parameter i of f; tries the CUkernel flavour when f is (or may be) a CUkernel.
CUresult param_info(CUfunction f, bool as_kernel, size_t i, size_t* off, size_t* size) {
  if (as_kernel) return PHOS_REAL(cuKernelGetParamInfo, reinterpret_cast<CUkernel>(f), i, off, size);
  return PHOS_REAL(cuFuncGetParamInfo, f, i, off, size);
}

const Layout* compute_layout(CUfunction f) {
  bool as_kernel = is_known_kernel(f);
  size_t off = 0, size = 0;
  CUresult r = param_info(f, as_kernel, 0, &off, &size);
  if (r == CUDA_ERROR_INVALID_HANDLE) {  // a CUkernel passed as a CUfunction (interception.md §4)
    as_kernel = !as_kernel;
    r = param_info(f, as_kernel, 0, &off, &size);
  }
  uint32_t cap = 16, n = 0;
  Layout* l = static_cast<Layout*>(malloc(sizeof(Layout) + cap * sizeof(Layout::P)));
  if (!l) return &g_unknown_layout;
  while (r == CUDA_SUCCESS) {
    if (n == kMaxParams) { r = CUDA_ERROR_UNKNOWN; break; }
    if (n == cap) {
      cap *= 2;
      Layout* g = static_cast<Layout*>(realloc(l, sizeof(Layout) + cap * sizeof(Layout::P)));
      if (!g) { r = CUDA_ERROR_OUT_OF_MEMORY; break; }
      l = g;
    }
    l->p[n++] = {static_cast<uint32_t>(off), static_cast<uint32_t>(size)};
    r = param_info(f, as_kernel, n, &off, &size);
  }
  if (r != CUDA_ERROR_INVALID_VALUE) {  // INVALID_VALUE past the last parameter is the normal end
    free(l);
    PHOS_LOG_CAPPED(10, debug, "no parameter layout for function %p (CUresult %d): launches widen to all",
                    static_cast<void*>(f), static_cast<int>(r));
    return &g_unknown_layout;
  }
  l->n = n;
  return l;
}

const Layout* layout_of(CUfunction f) {
  uint32_t gen = g_gen.load(std::memory_order_acquire);
  Slot* s = find_slot(g_layouts, reinterpret_cast<uintptr_t>(f), true);
  if (s) {
    const Layout* l = s->layout.load(std::memory_order_acquire);
    if (l && s->gen.load(std::memory_order_acquire) == gen) return l;
  }
  const Layout* l = compute_layout(f);
  if (s) {
    s->layout.store(l, std::memory_order_release);  // the old one leaks: readers may still hold it
    s->gen.store(gen, std::memory_order_release);
  }
  return l;
}

// ---------------------------------------------------------------------------------------------------
// Speculation
inline void note_word(Chunk* c, uint64_t w) {
  uint64_t off = w - g_base;
  if (off >= g_size) return;
  Chunk& ch = c[off >> kChunkShift];
  if (!ch.users.load(std::memory_order_relaxed)) return;
  g_track_stats.pointers.fetch_add(1, std::memory_order_relaxed);
  if (ch.holds_ptrs.load(std::memory_order_relaxed)) g_spec_all.store(true, std::memory_order_relaxed);
  Chunk& head = c[ch.ext_first.load(std::memory_order_relaxed)];
  if (!head.spec.load(std::memory_order_relaxed)) head.spec.store(1, std::memory_order_relaxed);
}

inline void scan_bytes(Chunk* c, const uint8_t* p, uint64_t len, uint64_t first_aligned) {
  for (uint64_t o = first_aligned; o + 8 <= len; o += 8) {
    uint64_t w;
    memcpy(&w, p + o, 8);
    note_word(c, w);
  }
}

void widen() {
  g_spec_all.store(true, std::memory_order_relaxed);
  g_track_stats.widened.fetch_add(1, std::memory_order_relaxed);
}

// extra = {CU_LAUNCH_PARAM_BUFFER_POINTER, buf, CU_LAUNCH_PARAM_BUFFER_SIZE, &size, CU_LAUNCH_PARAM_END}
bool scan_extra(Chunk* c, void** extra) {
  const uint8_t* buf = nullptr;
  size_t size = 0;
  for (int i = 0; i < 64 && extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
    if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER) buf = static_cast<const uint8_t*>(extra[i + 1]);
    else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE && extra[i + 1]) size = *static_cast<size_t*>(extra[i + 1]);
  }
  if (!buf) return false;
  scan_bytes(c, buf, size, 0);
  return true;
}

void track(CUfunction f, void** params, void** extra) {
  g_track_stats.launches.fetch_add(1, std::memory_order_relaxed);
  Chunk* c = g_chunks.load(std::memory_order_acquire);
  if (!c) return;  // no region yet: nothing tracked can be written
  if (extra && !params) {
    if (!scan_extra(c, extra)) widen();
    return;
  }
  if (!params) return;  // a kernel without parameters reaches no tracked memory through them
  const Layout* l = layout_of(f);
  if (l->n == kUnknown) { widen(); return; }
  for (uint32_t i = 0; i < l->n; ++i) {
    const uint8_t* v = static_cast<const uint8_t*>(params[i]);
    if (!v) continue;
    uint32_t off = l->p[i].off, size = l->p[i].size;
    // Words aligned in the parameter buffer, read from this parameter's own storage.
    uint64_t first = ((off + 7u) & ~7u) - off;
    scan_bytes(c, v, size, first);
  }
}

// The chunks one launch may touch, for the on-demand gate: the extent of every parameter word that
// points into a present chunk. False means "all" (no layout, an `extra` buffer we cannot read, or a
// pointer into a chunk known to hold device pointers: the kernel may reach anything from there).
bool collect_words(Chunk* c, const uint8_t* p, uint64_t len, uint64_t first, std::vector<uint32_t>* out) {
  for (uint64_t o = first; o + 8 <= len; o += 8) {
    uint64_t w;
    memcpy(&w, p + o, 8);
    uint64_t off = w - g_base;
    if (off >= g_size) continue;
    Chunk& ch = c[off >> kChunkShift];
    if (!ch.users.load(std::memory_order_relaxed)) continue;
    if (ch.holds_ptrs.load(std::memory_order_relaxed)) return false;
    uint32_t e = std::min(ch.ext_last.load(std::memory_order_relaxed), g_nchunks - 1);
    for (uint32_t j = ch.ext_first.load(std::memory_order_relaxed); j <= e; ++j) out->push_back(j);
  }
  return true;
}

bool launch_set(CUfunction f, void** params, void** extra, std::vector<uint32_t>* out) {
  Chunk* c = g_chunks.load(std::memory_order_acquire);
  if (!c) return true;
  if (extra && !params) {
    const uint8_t* buf = nullptr;
    size_t size = 0;
    for (int i = 0; i < 64 && extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
      if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER) buf = static_cast<const uint8_t*>(extra[i + 1]);
      else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE && extra[i + 1]) size = *static_cast<size_t*>(extra[i + 1]);
    }
    return buf && collect_words(c, buf, size, 0, out);
  }
  if (!params) return true;
  const Layout* l = layout_of(f);
  if (l->n == kUnknown) return false;
  for (uint32_t i = 0; i < l->n; ++i) {
    const uint8_t* v = static_cast<const uint8_t*>(params[i]);
    if (!v) continue;
    uint32_t off = l->p[i].off;
    if (!collect_words(c, v, l->p[i].size, ((off + 7u) & ~7u) - off, out)) return false;
  }
  return true;
}

// pre: the on-demand gate is armed. Waits for this launch's chunks (or all pending ones).
void ondemand_launch(CUfunction f, void** params, void** extra) {
  std::vector<uint32_t> set;
  bool precise = launch_set(f, params, extra, &set);
  ondemand_wait_chunks(set, !precise);
}

}  // namespace

// -----------------------------------------------------------------------------------------------------
// Chunk table

void chunks_init(uint64_t base, uint64_t size) {
  if (g_chunks.load(std::memory_order_acquire)) return;
  uint32_t n = static_cast<uint32_t>(size >> kChunkShift);
  Chunk* c = new (std::nothrow) Chunk[n];
  if (!c) return;
  g_base = base;
  g_size = static_cast<uint64_t>(n) << kChunkShift;
  g_nchunks = n;
  g_chunks.store(c, std::memory_order_release);
}

Chunk* chunks(uint64_t* base, uint32_t* n) {
  Chunk* c = g_chunks.load(std::memory_order_acquire);
  if (base) *base = g_base;
  if (n) *n = c ? g_nchunks : 0;
  return c;
}

void chunks_add(uint64_t va, uint64_t len, uint32_t ext_first, uint32_t ext_last) {
  Chunk* c = g_chunks.load(std::memory_order_acquire);
  if (!c || len == 0 || va < g_base || va + len > g_base + g_size) return;
  for (uint32_t i = chunk_of(g_base, va), e = chunk_of(g_base, va + len - 1); i <= e; ++i) {
    c[i].ext_first.store(ext_first, std::memory_order_relaxed);
    c[i].ext_last.store(ext_last, std::memory_order_relaxed);
    if (c[i].users.fetch_add(1, std::memory_order_release) == 0) c[i].fresh.store(1, std::memory_order_relaxed);
  }
}

void chunks_remove(uint64_t va, uint64_t len) {
  Chunk* c = g_chunks.load(std::memory_order_acquire);
  if (!c || len == 0 || va < g_base || va + len > g_base + g_size) return;
  for (uint32_t i = chunk_of(g_base, va), e = chunk_of(g_base, va + len - 1); i <= e; ++i) {
    if (c[i].users.load(std::memory_order_relaxed) == 0) continue;
    if (c[i].users.fetch_sub(1, std::memory_order_release) == 1) {
      c[i].holds_ptrs.store(0, std::memory_order_relaxed);
      c[i].ext_first.store(i, std::memory_order_relaxed);
      c[i].ext_last.store(i, std::memory_order_relaxed);
    }
  }
}

uint32_t chunks_present() {
  uint32_t n;
  Chunk* c = chunks(nullptr, &n);
  uint32_t k = 0;
  for (uint32_t i = 0; i < n; ++i) k += c[i].users.load(std::memory_order_relaxed) ? 1 : 0;
  return k;
}

void track_arm(bool on) {
  g_track_armed.store(on, std::memory_order_relaxed);
  PHOS_LOG(info, "launch tracking %s", on ? "armed" : "disarmed");
}

uint32_t spec_estimate() {
  uint32_t n;
  Chunk* c = chunks(nullptr, &n);
  if (g_spec_all.load(std::memory_order_relaxed)) return chunks_present();
  uint32_t k = 0;
  for (uint32_t i = 0; i < n; ++i) {
    if (!c[i].spec.load(std::memory_order_relaxed)) continue;
    uint32_t e = std::min(c[i].ext_last.load(std::memory_order_relaxed), n - 1);
    for (uint32_t j = i; j <= e; ++j) k += c[j].users.load(std::memory_order_relaxed) ? 1 : 0;
  }
  return k;
}

void spec_collect(std::vector<uint32_t>* out, bool* all) {
  out->clear();
  uint32_t n;
  Chunk* c = chunks(nullptr, &n);
  *all = g_spec_all.exchange(false, std::memory_order_relaxed);
  for (uint32_t i = 0; i < n; ++i) {
    if (!c[i].spec.exchange(0, std::memory_order_relaxed) && !*all) continue;
    if (*all) {
      if (c[i].users.load(std::memory_order_relaxed)) out->push_back(i);
      continue;
    }
    uint32_t e = std::min(c[i].ext_last.load(std::memory_order_relaxed), n - 1);
    for (uint32_t j = i; j <= e; ++j)
      if (c[j].users.load(std::memory_order_relaxed)) out->push_back(j);
  }
  std::sort(out->begin(), out->end());
  out->erase(std::unique(out->begin(), out->end()), out->end());
}

// -----------------------------------------------------------------------------------------------------
// Hooks

CUresult launch_kernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                       unsigned shmem, CUstream s, void** params, void** extra, bool ptsz) {
  GateGuard g;
  if (g_track_armed.load(std::memory_order_relaxed)) track(f, params, extra);
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_launch(f, params, extra);
  if (ptsz) return PHOS_REAL(cuLaunchKernel_ptsz, f, gx, gy, gz, bx, by, bz, shmem, s, params, extra);
  return PHOS_REAL(cuLaunchKernel, f, gx, gy, gz, bx, by, bz, shmem, s, params, extra);
}

CUresult launch_kernel_ex(const CUlaunchConfig* cfg, CUfunction f, void** params, void** extra, bool ptsz) {
  GateGuard g;
  if (g_track_armed.load(std::memory_order_relaxed)) track(f, params, extra);
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_launch(f, params, extra);
  if (ptsz) return PHOS_REAL(cuLaunchKernelEx_ptsz, cfg, f, params, extra);
  return PHOS_REAL(cuLaunchKernelEx, cfg, f, params, extra);
}

CUresult launch_cooperative(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                            unsigned bz, unsigned shmem, CUstream s, void** params, bool ptsz) {
  GateGuard g;
  if (g_track_armed.load(std::memory_order_relaxed)) track(f, params, nullptr);
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_launch(f, params, nullptr);
  if (ptsz) return PHOS_REAL(cuLaunchCooperativeKernel_ptsz, f, gx, gy, gz, bx, by, bz, shmem, s, params);
  return PHOS_REAL(cuLaunchCooperativeKernel, f, gx, gy, gz, bx, by, bz, shmem, s, params);
}

CUresult graph_launch(CUgraphExec g, CUstream s, bool ptsz) {
  GateGuard gate;
  if (g_ondemand.load(std::memory_order_relaxed)) ondemand_wait_chunks({}, true);  // nodes not visible: all
  if (g_track_armed.load(std::memory_order_relaxed)) {
    g_track_stats.launches.fetch_add(1, std::memory_order_relaxed);
    widen();  // a graph's kernel nodes are not visible here (yet): assume it writes everything
  }
  if (ptsz) return PHOS_REAL(cuGraphLaunch_ptsz, g, s);
  return PHOS_REAL(cuGraphLaunch, g, s);
}

CUresult library_get_kernel(CUkernel* k, CUlibrary lib, const char* name) {
  GateGuard g;
  CUresult r = PHOS_REAL(cuLibraryGetKernel, k, lib, name);
  if (r == CUDA_SUCCESS && k && *k) find_slot(g_kernels, reinterpret_cast<uintptr_t>(*k), true);
  return r;
}

CUresult library_unload(CUlibrary lib) {
  GateGuard g;
  CUresult r = PHOS_REAL(cuLibraryUnload, lib);
  g_gen.fetch_add(1, std::memory_order_acq_rel);  // handles may be reused with other layouts
  return r;
}

CUresult module_unload(CUmodule mod) {
  GateGuard g;
  CUresult r = PHOS_REAL(cuModuleUnload, mod);
  g_gen.fetch_add(1, std::memory_order_acq_rel);
  return r;
}

}  // namespace phos::hijack
