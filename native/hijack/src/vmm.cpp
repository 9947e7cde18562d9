// VMM allocator (DESIGN "core idea" 2). One region reserved at PHOS_VA_BASE and verified (ptr == hint);
// when the driver puts it elsewhere libphos says so once and serves every allocation from the driver
// (pass-through). Slabs of PHOS_SLAB_MIB physical memory (POSIX-fd shareable, so the keeper can hold a
// second reference) are mapped into the region; small requests share 2 MiB chunks without crossing
// one, large ones get whole chunks. The app's own VMM calls are forwarded and recorded.
#include "vmm.h"

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent-link.h"
#include "diag.h"
#include "driver.h"
#include "gate.h"
#include "launch-track.h"
#include "log.h"
#include "options.h"
#include "range-alloc.h"

namespace phos::hijack {
namespace {

constexpr uint64_t kSmallMax = 1ull << 20;  // <= 1 MiB: shares a chunk; larger: whole chunks
constexpr uint64_t kSmallAlign = 256;       // cuMemAlloc's documented alignment
constexpr uint64_t kPitchAlign = 512;

inline uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

struct Slab {
  uint64_t id, va, size;
  int dev;                         // device ordinal whose memory this is
  CUmemGenericAllocationHandle h;  // 0 while frozen (the keeper holds the memory)
  RangeAlloc heap;
};

struct Alloc {
  uint64_t size;      // what the app asked for
  uint64_t len;       // what it occupies in the slab
  Slab* slab;
  uint64_t id;
};

// Keyed by the handle value the app holds. After a thaw the memory lives in a new (imported) handle:
// `real` is what libphos passes to the driver for the app's value.
struct AppHandle {
  CUmemAllocationProp prop;
  uint64_t size, id;
  bool exported;      // announced to the agent (POSIX fd available)
  CUmemGenericAllocationHandle real;  // 0: released (by the app while still mapped, or by a freeze)
  bool app_released;  // the app called cuMemRelease; kept while a mapping still uses it
  bool dropped;       // a freeze unmapped/released it; a thaw brings it back
};

struct AppMapping {
  uint64_t size, offset;
  CUmemGenericAllocationHandle h;
};

struct AppReservation {
  uint64_t size, len;
  bool in_region;
};

struct AccessRec {
  uint64_t va, size;
  std::vector<CUmemAccessDesc> desc;
};

enum RegionState { kNone = 0, kReady = 1, kFailed = 2 };

std::mutex g_mu;
std::atomic<int> g_region_state{kNone};
RegionInfo g_region{};
// Containers live in one never-destroyed heap object built on first use: hooks may run before our
// static initialisers (another library's constructor) or after our destructors (atexit handlers).
struct Books {
  RangeAlloc va;                                     // offsets in the region
  std::vector<std::unique_ptr<Slab>> slabs;
  std::map<uint64_t, Alloc> allocs;                  // va -> allocation served from a slab
  std::map<uint64_t, uint64_t> passthrough;          // va -> size, served by the driver
  std::map<CUmemGenericAllocationHandle, AppHandle> handles;
  std::map<uint64_t, AppMapping> mappings;           // va -> the app's cuMemMap
  std::map<uint64_t, AppReservation> reservations;   // va -> the app's cuMemAddressReserve
  std::vector<AccessRec> access;
};
Books& B() {
  static Books* b = new Books;
  return *b;
}
uint64_t g_next_id = 1;
uint64_t g_slab_bytes = 0, g_slab_used = 0, g_alloc_bytes = 0, g_handle_bytes = 0, g_passthrough_bytes = 0;
std::atomic<int64_t> g_internal_bytes{0};
uint64_t g_baseline_used = 0;
// Per device ordinal: the context the app first allocated in there (a freeze drains each one), and the
// slab bytes held there (accounting compares only the region device's with cuMemGetInfo).
constexpr int kMaxDevices = 16;
CUcontext g_dev_ctx[kMaxDevices] = {};
uint64_t g_dev_slab_bytes[kMaxDevices] = {};

bool disabled() { return options().disabled; }

// Reserves the region in the current context. pre: g_mu held. Returns true when the region is usable;
// false now and later (kFailed) or just now (no context yet: kNone stays).
bool region_init_locked() {
  int s = g_region_state.load(std::memory_order_relaxed);
  if (s != kNone) return s == kReady;
  const Options& o = options();
  if (!o.vmm) { g_region_state.store(kFailed); return false; }
  CUcontext ctx = nullptr;
  if (PHOS_REAL(cuCtxGetCurrent, &ctx) != CUDA_SUCCESS || !ctx) return false;
  CUdevice dev = 0;
  if (PHOS_REAL(cuCtxGetDevice, &dev) != CUDA_SUCCESS) return false;
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = dev;
  prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  size_t gran = 0;
  CUresult r = PHOS_REAL(cuMemGetAllocationGranularity, &gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
  if (r != CUDA_SUCCESS || gran == 0 || kChunkBytes % gran) {
    PHOS_LOG(error, "VMM granularity query failed or does not divide 2 MiB (CUresult %d, granularity %zu): "
             "serving allocations from the driver (pass-through)", (int)r, gran);
    g_region_state.store(kFailed);
    return false;
  }
  CUdeviceptr p = 0;
  r = PHOS_REAL(cuMemAddressReserve, &p, o.va_size, kChunkBytes, o.va_base, 0);
  if (r != CUDA_SUCCESS || p != o.va_base) {
    if (r == CUDA_SUCCESS) PHOS_REAL(cuMemAddressFree, p, o.va_size);
    PHOS_LOG(error, "cannot reserve the VA region at PHOS_VA_BASE=0x%llx (size 0x%llx): driver %s (CUresult %d, "
             "got 0x%llx); serving allocations from the driver (pass-through, not droppable). Choose another "
             "PHOS_VA_BASE away from the host mmap area", (unsigned long long)o.va_base,
             (unsigned long long)o.va_size, r == CUDA_SUCCESS ? "placed it elsewhere" : "refused",
             (int)r, (unsigned long long)p);
    g_region_state.store(kFailed);
    return false;
  }
  size_t fr = 0, tot = 0;
  if (PHOS_REAL(cuMemGetInfo_v2, &fr, &tot) == CUDA_SUCCESS) g_baseline_used = tot - fr;
  g_region = {o.va_base, o.va_size, ctx, dev};
  B().va.reset(o.va_size);
  chunks_init(o.va_base, o.va_size);
  g_region_state.store(kReady, std::memory_order_release);
  PHOS_LOG(info, "VA region reserved at 0x%llx size 0x%llx on device %d", (unsigned long long)o.va_base,
           (unsigned long long)o.va_size, (int)dev);
  return true;
}

// The region is ready and the current context has a device libphos can serve; `dev` gets its ordinal.
// One region serves every device: a VA reservation is not tied to a device, each slab is.
bool region_for_current(CUdevice* dev) {
  int s = g_region_state.load(std::memory_order_acquire);
  if (s == kFailed) return false;
  if (s == kNone) {
    std::lock_guard<std::mutex> lk(g_mu);
    if (!region_init_locked()) return false;
  }
  CUcontext ctx = nullptr;
  if (PHOS_REAL(cuCtxGetDevice, dev) != CUDA_SUCCESS || *dev < 0 || *dev >= kMaxDevices) return false;
  if (PHOS_REAL(cuCtxGetCurrent, &ctx) != CUDA_SUCCESS || !ctx) return false;
  std::lock_guard<std::mutex> lk(g_mu);
  if (!g_dev_ctx[*dev]) g_dev_ctx[*dev] = ctx;
  return true;
}

// Who may touch a slab of device `dev`: dev itself read-write, and every device that can reach it
// peer-to-peer. cuCtxEnablePeerAccess covers cuMemAlloc memory but not VMM mappings, and libphos serves
// cuMemAlloc from VMM slabs, so the grant an app expects from enabling peer access is given up front.
std::vector<CUmemAccessDesc> slab_access(int dev) {
  std::vector<CUmemAccessDesc> out;
  int n = 0;
  if (PHOS_REAL(cuDeviceGetCount, &n) != CUDA_SUCCESS) n = 0;
  for (int d = 0; d < std::max(n, dev + 1) && d < kMaxDevices; ++d) {
    int can = d == dev;
    if (!can && PHOS_REAL(cuDeviceCanAccessPeer, &can, d, dev) != CUDA_SUCCESS) can = 0;
    if (!can) continue;
    CUmemAccessDesc a{};
    a.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    a.location.id = d;
    a.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    out.push_back(a);
  }
  return out;
}

void release_slab_locked(Slab* s) {
  PHOS_REAL(cuMemUnmap, s->va, s->size);
  PHOS_REAL(cuMemRelease, s->h);
  B().va.free(s->va - g_region.base, s->size);
  g_slab_bytes -= s->size;
  g_dev_slab_bytes[s->dev] -= s->size;
  agent_alloc_removed(s->id);
  PHOS_LOG(debug, "slab %llu released (0x%llx, %llu bytes)", (unsigned long long)s->id,
           (unsigned long long)s->va, (unsigned long long)s->size);
  B().slabs.erase(std::find_if(B().slabs.begin(), B().slabs.end(), [s](auto& p) { return p.get() == s; }));
}

// Creates and maps one slab of at least `len` bytes on device `dev`. pre: g_mu held, region ready.
CUresult new_slab_locked(uint64_t len, int dev, Slab** out) {
  uint64_t size = std::max<uint64_t>(round_up(len, kChunkBytes), options().slab_bytes);
  size = round_up(size, kChunkBytes);
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = dev;
  prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  CUmemGenericAllocationHandle h = 0;
  CUresult r = PHOS_REAL(cuMemCreate, &h, size, &prop, 0);
  if (r == CUDA_ERROR_OUT_OF_MEMORY && size > round_up(len, kChunkBytes)) {
    size = round_up(len, kChunkBytes);  // a full slab does not fit; the request alone may
    r = PHOS_REAL(cuMemCreate, &h, size, &prop, 0);
  }
  if (r != CUDA_SUCCESS) return r;
  uint64_t off = B().va.alloc(size, kChunkBytes);
  if (off == RangeAlloc::kFail) {
    PHOS_REAL(cuMemRelease, h);
    PHOS_LOG_CAPPED(3, warn, "VA region full (PHOS_VA_SIZE=0x%llx): serving from the driver",
                    (unsigned long long)g_region.size);
    return CUDA_ERROR_NOT_PERMITTED;  // caller falls back to pass-through
  }
  uint64_t va = g_region.base + off;
  r = PHOS_REAL(cuMemMap, va, size, 0, h, 0);
  if (r == CUDA_SUCCESS) {
    std::vector<CUmemAccessDesc> acc = slab_access(dev);
    r = PHOS_REAL(cuMemSetAccess, va, size, acc.data(), acc.size());
    if (r != CUDA_SUCCESS) PHOS_REAL(cuMemUnmap, va, size);
  }
  if (r != CUDA_SUCCESS) {
    PHOS_REAL(cuMemRelease, h);
    B().va.free(off, size);
    return r;
  }
  auto s = std::make_unique<Slab>();
  s->id = g_next_id++;
  s->va = va;
  s->size = size;
  s->dev = dev;
  s->h = h;
  s->heap.reset(size);
  *out = s.get();
  B().slabs.push_back(std::move(s));
  g_slab_bytes += size;
  g_dev_slab_bytes[dev] += size;
  if (g_slab_bytes > g_vmm_totals.slab_peak_bytes.load(std::memory_order_relaxed))
    g_vmm_totals.slab_peak_bytes.store(g_slab_bytes, std::memory_order_relaxed);
  agent_alloc_added((*out)->id, va, size, h, "slab", dev);
  PHOS_LOG(debug, "slab %llu at 0x%llx, %llu bytes, device %d", (unsigned long long)(*out)->id,
           (unsigned long long)va, (unsigned long long)size, dev);
  return CUDA_SUCCESS;
}

// Serves `size` bytes from device `dev`'s slabs. Returns NOT_PERMITTED when the caller should pass through.
CUresult alloc_locked(uint64_t size, int dev, CUdeviceptr* p) {
  bool small = size <= kSmallMax;
  uint64_t len = small ? round_up(size, kSmallAlign) : round_up(size, kChunkBytes);
  uint64_t align = small ? kSmallAlign : kChunkBytes;
  uint64_t boundary = small ? kChunkBytes : 0;
  Slab* slab = nullptr;
  uint64_t off = RangeAlloc::kFail;
  for (auto& s : B().slabs) {
    if (s->dev != dev) continue;
    off = s->heap.alloc(len, align, boundary);
    if (off != RangeAlloc::kFail) { slab = s.get(); break; }
  }
  if (!slab) {
    CUresult r = new_slab_locked(len, dev, &slab);
    if (r != CUDA_SUCCESS) return r;
    off = slab->heap.alloc(len, align, boundary);
    if (off == RangeAlloc::kFail) return CUDA_ERROR_OUT_OF_MEMORY;  // cannot happen: the slab fits len
  }
  uint64_t va = slab->va + off;
  uint64_t id = g_next_id++;
  B().allocs[va] = {size, len, slab, id};
  g_slab_used += len;
  g_alloc_bytes += size;
  g_vmm_totals.served_allocs.fetch_add(1, std::memory_order_relaxed);
  g_vmm_totals.served_bytes.fetch_add(size, std::memory_order_relaxed);
  uint32_t first = chunk_of(g_region.base, va), last = chunk_of(g_region.base, va + len - 1);
  chunks_add(va, len, first, last);
  *p = va;
  return CUDA_SUCCESS;
}

// pre: g_mu held; a is in B().allocs.
void free_locked(std::map<uint64_t, Alloc>::iterator it) {
  uint64_t va = it->first;
  Alloc a = it->second;
  B().allocs.erase(it);
  chunks_remove(va, a.len);
  a.slab->heap.free(va - a.slab->va, a.len);
  g_slab_used -= a.len;
  g_alloc_bytes -= a.size;
  if (a.slab->heap.used_bytes() == 0) {
    // Keep one empty standard slab for the next allocation; release oversized and surplus ones.
    bool other_empty = false;
    for (auto& s : B().slabs)
      if (s.get() != a.slab && s->heap.used_bytes() == 0 && s->size == options().slab_bytes) other_empty = true;
    if (other_empty || a.slab->size != options().slab_bytes) release_slab_locked(a.slab);
  }
}

// The allocation containing p (within the size the app asked for). pre: g_mu held.
std::map<uint64_t, Alloc>::iterator containing_locked(uint64_t p) {
  auto it = B().allocs.upper_bound(p);
  if (it == B().allocs.begin()) return B().allocs.end();
  --it;
  if (p < it->first + std::max<uint64_t>(it->second.size, 1)) return it;
  return B().allocs.end();
}

void note_passthrough(CUdeviceptr p, size_t size) {
  std::lock_guard<std::mutex> lk(g_mu);
  B().passthrough[p] = size;
  g_passthrough_bytes += size;
  g_vmm_totals.passthrough_bytes.fetch_add(size, std::memory_order_relaxed);
}

// Removes a driver-served allocation from the books; returns false if it is not one.
bool forget_passthrough(CUdeviceptr p) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = B().passthrough.find(p);
  if (it == B().passthrough.end()) return false;
  g_passthrough_bytes -= it->second;
  B().passthrough.erase(it);
  return true;
}

CUresult passthrough_alloc(CUdeviceptr* p, size_t size) {
  CUresult r = PHOS_REAL(cuMemAlloc_v2, p, size);
  if (r == CUDA_SUCCESS && p) note_passthrough(*p, size);
  return r;
}

// Frees one of ours after the caller made the memory idle. Returns NOT_FOUND if p is not ours.
CUresult free_ours(CUdeviceptr p) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = B().allocs.find(p);
  if (it == B().allocs.end()) return CUDA_ERROR_NOT_FOUND;
  free_locked(it);
  return CUDA_SUCCESS;
}

// The app released `h` and no mapping uses it any more: the memory is gone; the keeper may drop it too.
// pre: g_mu held.
void forget_handle_if_unused_locked(CUmemGenericAllocationHandle h) {
  auto it = B().handles.find(h);
  if (it == B().handles.end() || !it->second.app_released) return;
  for (auto& [va, m] : B().mappings)
    if (m.h == h) return;
  g_handle_bytes -= it->second.size;
  if (it->second.exported) agent_alloc_removed(it->second.id);
  B().handles.erase(it);
}

// The driver's handle for the app's value (they differ after a thaw). pre: g_mu held.
CUmemGenericAllocationHandle real_handle_locked(CUmemGenericAllocationHandle h) {
  auto it = B().handles.find(h);
  return it != B().handles.end() && it->second.real ? it->second.real : h;
}

bool is_ours(CUdeviceptr p) {
  if (g_region_state.load(std::memory_order_acquire) != kReady) return false;
  std::lock_guard<std::mutex> lk(g_mu);
  return B().allocs.count(p) != 0;
}

}  // namespace

// -----------------------------------------------------------------------------------------------------

std::mutex& vmm_lock() { return g_mu; }

bool vmm_region(RegionInfo* out) {
  if (g_region_state.load(std::memory_order_acquire) != kReady) return false;
  if (out) *out = g_region;
  return true;
}

void vmm_note_internal(int64_t delta) { g_internal_bytes.fetch_add(delta, std::memory_order_relaxed); }

void vmm_for_each_physical(
    const std::function<void(uint64_t, uint64_t, uint64_t, CUmemGenericAllocationHandle, const char*, int)>& fn) {
  for (auto& s : B().slabs) fn(s->id, s->va, s->size, s->h, "slab", s->dev);
  for (auto& [h, a] : B().handles)
    if (a.exported && a.real) fn(a.id, 0, a.size, a.real, "app", a.prop.location.id);
}

std::vector<CUcontext> vmm_device_contexts() {
  std::lock_guard<std::mutex> lk(g_mu);
  std::vector<CUcontext> out;
  for (CUcontext c : g_dev_ctx)
    if (c) out.push_back(c);
  return out;
}

int vmm_accounting(Accounting* a) {
  *a = Accounting{};
  size_t fr = 0, tot = 0;
  CUresult r = CUDA_SUCCESS;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    a->region_ok = g_region_state.load() == kReady;
    a->slab_bytes = g_slab_bytes;
    a->slab_used_bytes = g_slab_used;
    a->alloc_bytes = g_alloc_bytes;
    a->app_handle_bytes = g_handle_bytes;
    a->passthrough_bytes = g_passthrough_bytes;
    a->internal_bytes = static_cast<uint64_t>(std::max<int64_t>(0, g_internal_bytes.load()));
    a->baseline_used_bytes = g_baseline_used;
    a->slabs = static_cast<uint32_t>(B().slabs.size());
    a->allocations = static_cast<uint32_t>(B().allocs.size());
    a->app_handles = static_cast<uint32_t>(B().handles.size());
    a->app_mappings = static_cast<uint32_t>(B().mappings.size());
    a->passthrough_allocs = static_cast<uint32_t>(B().passthrough.size());
  }
  r = PHOS_REAL(cuMemGetInfo_v2, &fr, &tot);
  if (r != CUDA_SUCCESS) return r;
  // cuMemGetInfo answers for the region's device only: other devices' slabs are not in it.
  const uint64_t region_slab_bytes = a->region_ok ? g_dev_slab_bytes[g_region.dev] : a->slab_bytes;
  a->driver_used_bytes = tot - fr;
  a->unexplained_bytes = static_cast<int64_t>(a->driver_used_bytes) - static_cast<int64_t>(a->baseline_used_bytes) -
                         static_cast<int64_t>(region_slab_bytes + a->app_handle_bytes + a->passthrough_bytes +
                                              a->internal_bytes);
  return 0;
}

CUresult mem_alloc(CUdeviceptr* p, size_t size) {
  GateGuard gate_;
  if (disabled() || !p || size == 0) return PHOS_REAL(cuMemAlloc_v2, p, size);
  agent_start();
  CUdevice dev = 0;
  if (!region_for_current(&dev)) return passthrough_alloc(p, size);
  CUresult r;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    r = alloc_locked(size, dev, p);
  }
  if (r == CUDA_ERROR_NOT_PERMITTED) return passthrough_alloc(p, size);
  return r;
}

CUresult mem_alloc_pitch(CUdeviceptr* p, size_t* pitch, size_t width, size_t height, unsigned elem) {
  GateGuard gate_;
  if (disabled() || !p || !pitch || width == 0 || height == 0 || (elem != 4 && elem != 8 && elem != 16))
    return PHOS_REAL(cuMemAllocPitch_v2, p, pitch, width, height, elem);
  agent_start();
  CUdevice dev = 0;
  if (!region_for_current(&dev)) {
    CUresult r = PHOS_REAL(cuMemAllocPitch_v2, p, pitch, width, height, elem);
    if (r == CUDA_SUCCESS) note_passthrough(*p, *pitch * height);
    return r;
  }
  uint64_t pt = round_up(width, kPitchAlign);
  if (height > (~0ull) / pt) return CUDA_ERROR_INVALID_VALUE;
  CUresult r;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    r = alloc_locked(pt * height, dev, p);
  }
  if (r == CUDA_ERROR_NOT_PERMITTED) {
    r = PHOS_REAL(cuMemAllocPitch_v2, p, pitch, width, height, elem);
    if (r == CUDA_SUCCESS) note_passthrough(*p, *pitch * height);
    return r;
  }
  if (r == CUDA_SUCCESS) *pitch = pt;
  return r;
}

CUresult mem_free(CUdeviceptr p) {
  GateGuard gate_;
  if (!is_ours(p)) {
    CUresult r = PHOS_REAL(cuMemFree_v2, p);
    if (r == CUDA_SUCCESS) forget_passthrough(p);
    return r;
  }
  // cuMemFree waits for outstanding work on the memory; sub-allocated memory is reused at once, so wait.
  CUresult r = PHOS_REAL(cuCtxSynchronize);
  if (r != CUDA_SUCCESS) return r;
  r = free_ours(p);
  return r == CUDA_ERROR_NOT_FOUND ? CUDA_ERROR_INVALID_VALUE : r;  // lost a race with another free
}

CUresult mem_get_address_range(CUdeviceptr* base, size_t* size, CUdeviceptr p) {
  GateGuard gate_;
  if (g_region_state.load(std::memory_order_acquire) == kReady) {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = containing_locked(p);
    if (it != B().allocs.end()) {
      if (base) *base = it->first;
      if (size) *size = it->second.size;
      return CUDA_SUCCESS;
    }
  }
  return PHOS_REAL(cuMemGetAddressRange_v2, base, size, p);
}

CUresult mem_get_info(size_t* free, size_t* total) {
  GateGuard gate_;
  CUresult r = PHOS_REAL(cuMemGetInfo_v2, free, total);
  if (r != CUDA_SUCCESS || !free || !total) return r;
  // Slab capacity not handed out is free as far as the app is concerned (cuMemAlloc would be served).
  std::lock_guard<std::mutex> lk(g_mu);
  uint64_t spare = g_slab_bytes - g_slab_used;
  *free = static_cast<size_t>(std::min<uint64_t>(*total, *free + spare));
  return r;
}

namespace {
// Overrides the attributes whose true answer (the slab mapping) would mislead the app. pre: g_mu held.
void patch_attr(void* data, CUpointer_attribute attr, uint64_t p, const Alloc& a, uint64_t va) {
  (void)p;
  switch (attr) {
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR: *static_cast<CUdeviceptr*>(data) = va; break;
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE: *static_cast<size_t*>(data) = a.size; break;
    case CU_POINTER_ATTRIBUTE_BUFFER_ID: *static_cast<unsigned long long*>(data) = (1ull << 62) | a.id; break;
    default: break;
  }
}
}  // namespace

CUresult pointer_get_attribute(void* data, CUpointer_attribute attr, CUdeviceptr p) {
  GateGuard gate_;
  CUresult r = PHOS_REAL(cuPointerGetAttribute, data, attr, p);
  if (r != CUDA_SUCCESS || !data || g_region_state.load(std::memory_order_acquire) != kReady) return r;
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = containing_locked(p);
  if (it != B().allocs.end()) patch_attr(data, attr, p, it->second, it->first);
  return r;
}

CUresult pointer_get_attributes(unsigned n, CUpointer_attribute* attrs, void** data, CUdeviceptr p) {
  GateGuard gate_;
  CUresult r = PHOS_REAL(cuPointerGetAttributes, n, attrs, data, p);
  if (r != CUDA_SUCCESS || !attrs || !data || g_region_state.load(std::memory_order_acquire) != kReady) return r;
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = containing_locked(p);
  if (it == B().allocs.end()) return r;
  for (unsigned i = 0; i < n; ++i)
    if (data[i]) patch_attr(data[i], attrs[i], p, it->second, it->first);
  return r;
}

// Stream-ordered pools keep their own reservations (no VA control): served by the driver, recorded as
// pass-through bytes so the accounting explains them and a freeze knows they are not droppable.
CUresult mem_alloc_async(CUdeviceptr* p, size_t size, CUstream s, bool ptsz) {
  GateGuard gate_;
  CUresult r = ptsz ? PHOS_REAL(cuMemAllocAsync_ptsz, p, size, s) : PHOS_REAL(cuMemAllocAsync, p, size, s);
  if (r == CUDA_SUCCESS && p && !disabled()) note_passthrough(*p, size);
  return r;
}

CUresult mem_alloc_from_pool_async(CUdeviceptr* p, size_t size, CUmemoryPool pool, CUstream s, bool ptsz) {
  GateGuard gate_;
  CUresult r = ptsz ? PHOS_REAL(cuMemAllocFromPoolAsync_ptsz, p, size, pool, s)
                    : PHOS_REAL(cuMemAllocFromPoolAsync, p, size, pool, s);
  if (r == CUDA_SUCCESS && p && !disabled()) note_passthrough(*p, size);
  return r;
}

CUresult mem_free_async(CUdeviceptr p, CUstream s, bool ptsz) {
  GateGuard gate_;
  if (is_ours(p)) {
    // A stream-ordered free of slab memory: wait for the stream, then free. Inside a capture that would
    // break the capture, so refuse there as the driver refuses unsupported operations.
    CUstreamCaptureStatus cs = CU_STREAM_CAPTURE_STATUS_NONE;
    CUresult r = ptsz ? PHOS_REAL(cuStreamIsCapturing_ptsz, s, &cs) : PHOS_REAL(cuStreamIsCapturing, s, &cs);
    if (r == CUDA_SUCCESS && cs != CU_STREAM_CAPTURE_STATUS_NONE) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    r = PHOS_REAL(cuStreamSynchronize, s);
    if (r != CUDA_SUCCESS) return r;
    r = free_ours(p);
    return r == CUDA_ERROR_NOT_FOUND ? CUDA_ERROR_INVALID_VALUE : r;
  }
  CUresult r = ptsz ? PHOS_REAL(cuMemFreeAsync_ptsz, p, s) : PHOS_REAL(cuMemFreeAsync, p, s);
  if (r == CUDA_SUCCESS) forget_passthrough(p);
  return r;
}

// -----------------------------------------------------------------------------------------------------
// The app's own VMM calls

CUresult mem_create(CUmemGenericAllocationHandle* h, size_t size, const CUmemAllocationProp* prop,
                    unsigned long long flags) {
  GateGuard gate_;
  if (disabled() || !h || !prop) return PHOS_REAL(cuMemCreate, h, size, prop, flags);
  agent_start();
  CUmemAllocationProp p = *prop;
  bool added = false;
  if (options().force_fd && !(p.requestedHandleTypes & CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)) {
    // Make it exportable so the keeper can hold it; harmless to the app.
    p.requestedHandleTypes = static_cast<CUmemAllocationHandleType>(p.requestedHandleTypes |
                                                                     CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
    added = true;
  }
  CUresult r = PHOS_REAL(cuMemCreate, h, size, &p, flags);
  if (r != CUDA_SUCCESS && added) {
    p = *prop;
    r = PHOS_REAL(cuMemCreate, h, size, &p, flags);
  }
  if (r != CUDA_SUCCESS) return r;
  std::lock_guard<std::mutex> lk(g_mu);
  bool exportable = p.requestedHandleTypes & CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  uint64_t id = g_next_id++;
  B().handles[*h] = {p, size, id, exportable, *h, false, false};
  g_handle_bytes += size;
  if (exportable) agent_alloc_added(id, 0, size, *h, "app", p.location.id);
  return r;
}

CUresult mem_release(CUmemGenericAllocationHandle h) {
  GateGuard gate_;
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = B().handles.find(h);
  if (it == B().handles.end() || it->second.app_released) return PHOS_REAL(cuMemRelease, h);
  AppHandle& a = it->second;
  CUresult r = a.real ? PHOS_REAL(cuMemRelease, a.real) : CUDA_SUCCESS;
  if (r != CUDA_SUCCESS) return r;
  a.real = 0;
  a.app_released = true;
  forget_handle_if_unused_locked(h);
  return r;
}

CUresult mem_address_reserve(CUdeviceptr* p, size_t size, size_t align, CUdeviceptr addr, unsigned long long flags) {
  GateGuard gate_;
  if (disabled() || !p || size == 0 || addr != 0 || flags != 0 || (align & (align - 1)))
    return PHOS_REAL(cuMemAddressReserve, p, size, align, addr, flags);
  agent_start();
  CUdevice dev = 0;
  if (region_for_current(&dev) || g_region_state.load() == kReady) {
    std::lock_guard<std::mutex> lk(g_mu);
    uint64_t len = round_up(size, kChunkBytes);
    uint64_t off = B().va.alloc(len, std::max<uint64_t>(align, kChunkBytes));
    if (off != RangeAlloc::kFail) {
      *p = g_region.base + off;
      B().reservations[*p] = {size, len, true};
      return CUDA_SUCCESS;
    }
    PHOS_LOG_CAPPED(3, warn, "VA region cannot hold a reservation of %zu bytes: forwarded to the driver", size);
  }
  CUresult r = PHOS_REAL(cuMemAddressReserve, p, size, align, addr, flags);
  if (r == CUDA_SUCCESS) {
    std::lock_guard<std::mutex> lk(g_mu);
    B().reservations[*p] = {size, size, false};
  }
  return r;
}

CUresult mem_address_free(CUdeviceptr p, size_t size) {
  GateGuard gate_;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = B().reservations.find(p);
    if (it != B().reservations.end() && it->second.in_region) {
      if (it->second.size != size) return CUDA_ERROR_INVALID_VALUE;
      B().va.free(p - g_region.base, it->second.len);
      B().reservations.erase(it);
      return CUDA_SUCCESS;
    }
  }
  CUresult r = PHOS_REAL(cuMemAddressFree, p, size);
  if (r == CUDA_SUCCESS) {
    std::lock_guard<std::mutex> lk(g_mu);
    B().reservations.erase(p);
  }
  return r;
}

CUresult mem_map(CUdeviceptr p, size_t size, size_t offset, CUmemGenericAllocationHandle h, unsigned long long flags) {
  GateGuard gate_;
  std::lock_guard<std::mutex> lk(g_mu);
  CUresult r = PHOS_REAL(cuMemMap, p, size, offset, real_handle_locked(h), flags);
  if (r != CUDA_SUCCESS || disabled()) return r;
  B().mappings[p] = {size, offset, h};
  if (g_region_state.load() == kReady && p >= g_region.base && p + size <= g_region.base + g_region.size) {
    // Pointers into a reservation may reach any of it (expandable segments grow one tensor over many maps).
    uint64_t lo = p, hi = p + size;
    auto it = B().reservations.upper_bound(p);
    if (it != B().reservations.begin()) {
      --it;
      if (p < it->first + it->second.len) lo = it->first, hi = it->first + it->second.len;
    }
    chunks_add(p, size, chunk_of(g_region.base, lo), chunk_of(g_region.base, hi - 1));
    g_vmm_totals.app_region_map_bytes.fetch_add(size, std::memory_order_relaxed);
  }
  return r;
}

CUresult mem_unmap(CUdeviceptr p, size_t size) {
  GateGuard gate_;
  // Under the lock: a hash round must never read a range while it is being unmapped.
  std::lock_guard<std::mutex> lk(g_mu);
  CUresult r = PHOS_REAL(cuMemUnmap, p, size);
  if (r != CUDA_SUCCESS) return r;
  std::vector<CUmemGenericAllocationHandle> touched;
  for (auto it = B().mappings.lower_bound(p); it != B().mappings.end() && it->first < p + size;) {
    chunks_remove(it->first, it->second.size);
    touched.push_back(it->second.h);
    it = B().mappings.erase(it);
  }
  for (auto h : touched) forget_handle_if_unused_locked(h);
  std::erase_if(B().access, [&](const AccessRec& a) { return a.va >= p && a.va + a.size <= p + size; });
  return r;
}

CUresult mem_set_access(CUdeviceptr p, size_t size, const CUmemAccessDesc* desc, size_t count) {
  GateGuard gate_;
  CUresult r = PHOS_REAL(cuMemSetAccess, p, size, desc, count);
  if (r != CUDA_SUCCESS || disabled() || !desc) return r;
  std::lock_guard<std::mutex> lk(g_mu);
  if (B().mappings.count(p) || count) B().access.push_back({p, size, std::vector<CUmemAccessDesc>(desc, desc + count)});
  return r;
}

// -----------------------------------------------------------------------------------------------------
// Freeze / thaw / snapshot (freeze.cpp drives these with the gate closed and the GPU drained)

namespace {

CUresult set_slab_access(uint64_t va, uint64_t size, int dev) {
  std::vector<CUmemAccessDesc> acc = slab_access(dev);
  return PHOS_REAL(cuMemSetAccess, va, size, acc.data(), acc.size());
}

// The access the app last set on a range covering [va, va+size), else read-write for device `dev`.
CUresult restore_access_locked(uint64_t va, uint64_t size, int dev) {
  for (auto it = B().access.rbegin(); it != B().access.rend(); ++it)
    if (it->va <= va && va + size <= it->va + it->size && !it->desc.empty())
      return PHOS_REAL(cuMemSetAccess, va, size, it->desc.data(), it->desc.size());
  return set_slab_access(va, size, dev);
}

CUresult import_fd(int fd, CUmemGenericAllocationHandle* h) {
  return PHOS_REAL(cuMemImportFromShareableHandle, h, reinterpret_cast<void*>(static_cast<intptr_t>(fd)),
                   CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
}

std::string cu_err(const char* what, CUresult r) { return std::string(what) + " failed: CUresult " + std::to_string(r); }

}  // namespace

bool vmm_drop(std::string* err) {
  std::lock_guard<std::mutex> lk(g_mu);
  // Phase 1, reversible: unmap. A failure re-maps what was unmapped (the handles are still ours).
  struct Undo { uint64_t va, size, off; CUmemGenericAllocationHandle h; int dev; };
  std::vector<Undo> undone;
  CUresult r = CUDA_SUCCESS;
  const char* what = nullptr;
  for (auto& s : B().slabs) {
    if (!s->h) continue;
    if ((r = PHOS_REAL(cuMemUnmap, s->va, s->size)) != CUDA_SUCCESS) { what = "cuMemUnmap(slab)"; break; }
    undone.push_back({s->va, s->size, 0, s->h, s->dev});
  }
  if (r == CUDA_SUCCESS) {
    for (auto& [va, m] : B().mappings) {
      auto it = B().handles.find(m.h);
      if (it == B().handles.end() || !it->second.exported) continue;  // the keeper does not hold it: stays
      CUmemGenericAllocationHandle real = it->second.real ? it->second.real : m.h;
      if ((r = PHOS_REAL(cuMemUnmap, va, m.size)) != CUDA_SUCCESS) { what = "cuMemUnmap(app mapping)"; break; }
      undone.push_back({va, m.size, m.offset, real, it->second.prop.location.id});
    }
  }
  if (r != CUDA_SUCCESS) {
    for (auto& u : undone)
      if (PHOS_REAL(cuMemMap, u.va, u.size, u.off, u.h, 0) == CUDA_SUCCESS) restore_access_locked(u.va, u.size, u.dev);
    *err = cu_err(what, r);
    return false;
  }
  // Phase 2: release our references; the keeper's keep the memory.
  for (auto& s : B().slabs) {
    if (!s->h) continue;
    PHOS_REAL(cuMemRelease, s->h);
    s->h = 0;
  }
  for (auto& [h, a] : B().handles) {
    if (!a.exported) continue;
    bool mapped = false;
    for (auto& [va, m] : B().mappings) mapped |= m.h == h;
    if (!a.app_released && a.real) PHOS_REAL(cuMemRelease, a.real);
    a.real = 0;
    a.dropped = a.app_released ? mapped : true;
  }
  return true;
}

uint32_t vmm_dropped_count() {
  std::lock_guard<std::mutex> lk(g_mu);
  uint32_t n = 0;
  for (auto& s : B().slabs) n += s->h ? 0 : 1;
  for (auto& [h, a] : B().handles) n += a.dropped ? 1 : 0;
  return n;
}

int vmm_thaw_one(uint64_t id, int fd, std::string* err) {
  std::lock_guard<std::mutex> lk(g_mu);
  for (auto& s : B().slabs) {
    if (s->id != id) continue;
    if (s->h) return 1;  // already back
    CUmemGenericAllocationHandle h = 0;
    CUresult r = import_fd(fd, &h);
    if (r != CUDA_SUCCESS) { *err = cu_err("cuMemImportFromShareableHandle(slab)", r); return -1; }
    if ((r = PHOS_REAL(cuMemMap, s->va, s->size, 0, h, 0)) != CUDA_SUCCESS) {
      PHOS_REAL(cuMemRelease, h);
      *err = cu_err("cuMemMap(slab at its old address)", r);
      return -1;
    }
    if ((r = set_slab_access(s->va, s->size, s->dev)) != CUDA_SUCCESS) {
      PHOS_REAL(cuMemUnmap, s->va, s->size);
      PHOS_REAL(cuMemRelease, h);
      *err = cu_err("cuMemSetAccess(slab)", r);
      return -1;
    }
    s->h = h;
    return 0;
  }
  for (auto& [apph, a] : B().handles) {
    if (a.id != id) continue;
    if (!a.dropped) return 1;
    CUmemGenericAllocationHandle h = 0;
    CUresult r = import_fd(fd, &h);
    if (r != CUDA_SUCCESS) { *err = cu_err("cuMemImportFromShareableHandle(app handle)", r); return -1; }
    std::vector<std::pair<uint64_t, uint64_t>> mapped;
    for (auto& [va, m] : B().mappings) {
      if (m.h != apph) continue;
      r = PHOS_REAL(cuMemMap, va, m.size, m.offset, h, 0);
      if (r == CUDA_SUCCESS) r = restore_access_locked(va, m.size, a.prop.location.id);
      if (r != CUDA_SUCCESS) {
        for (auto& [v, n] : mapped) PHOS_REAL(cuMemUnmap, v, n);
        PHOS_REAL(cuMemRelease, h);
        *err = cu_err("re-map of an app mapping", r);
        return -1;
      }
      mapped.push_back({va, m.size});
    }
    if (a.app_released) PHOS_REAL(cuMemRelease, h);  // its mappings keep the memory, as before
    else a.real = h;
    a.dropped = false;
    return 0;
  }
  *err = "allocation id " + std::to_string(id) + " is not one this process dropped";
  return -2;
}

bool vmm_alloc_info(uint64_t id, uint64_t* size, bool* is_slab) {
  std::lock_guard<std::mutex> lk(g_mu);
  for (auto& s : B().slabs)
    if (s->id == id) { *size = s->size; *is_slab = true; return true; }
  for (auto& [h, a] : B().handles)
    if (a.id == id) { *size = a.size; *is_slab = false; return true; }
  return false;
}

int vmm_copy_out(uint64_t id, CUdeviceptr dst, uint64_t dst_size, CUstream st, uint64_t* bytes, std::string* err) {
  std::lock_guard<std::mutex> lk(g_mu);
  for (auto& s : B().slabs) {
    if (s->id != id) continue;
    if (!s->h) { *err = "slab " + std::to_string(id) + " is dropped"; return -1; }
    if (dst_size < s->size) { *err = "spare memory for slab " + std::to_string(id) + " is smaller than the slab"; return -1; }
    CUresult r = PHOS_REAL(cuMemcpyDtoDAsync_v2, dst, s->va, s->size, st);
    if (r != CUDA_SUCCESS) { *err = cu_err("cuMemcpyDtoDAsync(slab -> spare)", r); return -1; }
    *bytes += s->size;
    return 0;
  }
  for (auto& [apph, a] : B().handles) {
    if (a.id != id) continue;
    // An app handle is copied through a temporary mapping of the whole handle.
    CUmemGenericAllocationHandle h = a.real;
    if (!h) { *err = "app handle " + std::to_string(id) + " has no live handle to read"; return -1; }
    if (dst_size < a.size) { *err = "spare memory for app handle " + std::to_string(id) + " is too small"; return -1; }
    CUdeviceptr tmp = 0;
    CUresult r = PHOS_REAL(cuMemAddressReserve, &tmp, a.size, 0, 0, 0);
    if (r != CUDA_SUCCESS) { *err = cu_err("cuMemAddressReserve(temporary)", r); return -1; }
    r = PHOS_REAL(cuMemMap, tmp, a.size, 0, h, 0);
    if (r == CUDA_SUCCESS) {
      r = set_slab_access(tmp, a.size, a.prop.location.id);
      if (r == CUDA_SUCCESS) r = PHOS_REAL(cuMemcpyDtoDAsync_v2, dst, tmp, a.size, st);
      if (r == CUDA_SUCCESS) r = PHOS_REAL(cuStreamSynchronize, st);
      PHOS_REAL(cuMemUnmap, tmp, a.size);
    }
    PHOS_REAL(cuMemAddressFree, tmp, a.size);
    if (r != CUDA_SUCCESS) { *err = cu_err("copy of an app handle into spare memory", r); return -1; }
    *bytes += a.size;
    return 0;
  }
  *err = "allocation id " + std::to_string(id) + " is unknown";
  return -2;
}

}  // namespace phos::hijack
