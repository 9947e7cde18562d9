// cuMemAlloc family (each allocation = its own memfd mapped into the device VA region), memory info
// and address ranges, page-locked host memory and pointer attributes. Copies live in copy.cpp.
#include "memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <map>
#include <mutex>

#include "arena.h"
#include "context.h"
#include "log.h"
#include "options.h"
#include "stream.h"

namespace phos::cudasim::memory {
namespace {

struct HostRange {
  size_t size;
  unsigned flags;
  bool owned;  // allocated by cuMemHostAlloc (we unmap it), not registered user memory
};

// Leaked on purpose: copies issued from other threads may consult it while the process exits.
std::mutex &g_host_mutex = *new std::mutex;
std::map<uintptr_t, HostRange> &g_host = *new std::map<uintptr_t, HostRange>;  // start -> range

const std::pair<const uintptr_t, HostRange> *find_host(uintptr_t p) {
  auto it = g_host.upper_bound(p);
  if (it == g_host.begin()) return nullptr;
  --it;
  return p < it->first + it->second.size ? &*it : nullptr;
}

CUresult host_alloc(void **pp, size_t size, unsigned flags) {
  if (CUresult r = require_context()) return r;
  if (!pp || size == 0) return CUDA_ERROR_INVALID_VALUE;
  // Ordinary private anonymous memory: CRIU dumps it like any host page, as with real pinned memory.
  void *p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
  std::lock_guard lk(g_host_mutex);
  g_host[reinterpret_cast<uintptr_t>(p)] = HostRange{size, flags, true};
  *pp = p;
  return CUDA_SUCCESS;
}

CUresult host_register(void *p, size_t size, unsigned flags) {
  if (CUresult r = require_context()) return r;
  if (!p || size == 0) return CUDA_ERROR_INVALID_VALUE;
  auto a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard lk(g_host_mutex);
  auto next = g_host.lower_bound(a);
  if (find_host(a) || (next != g_host.end() && next->first < a + size))
    return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
  g_host[a] = HostRange{size, flags, false};
  return CUDA_SUCCESS;
}

}  // namespace

CUresult alloc_device(size_t bytes, CUdeviceptr *dptr) {
  size_t size = align_up(bytes, kPage);
  size_t align = size >= kGranularity ? kGranularity : kPage;
  const CUdevice dev = current_device();
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  uintptr_t va;
  if (CUresult r = arena::reserve(size, align, 0, dev, &va)) return r;
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = dev;
  arena::Phys *p;
  if (CUresult r = arena::create_phys(size, prop, &p)) {
    arena::unreserve(va, size);
    return r;
  }
  p->from_alloc = true;
  p->ctx = current_context() ? current_context() : primary_context(dev);
  p->handle_refs = 0;  // no handle the app could release: the mapping owns it
  arena::Mapping *m;
  if (CUresult r = arena::map(va, size, 0, p, PROT_READ | PROT_WRITE, &m)) {
    arena::drop_phys_if_unused(p);
    arena::unreserve(va, size);
    return r;
  }
  m->alloc_bytes = bytes;
  close(p->fd);  // the mapping keeps the memory; saves an fd per allocation
  p->fd = -1;
  *dptr = va;
  return CUDA_SUCCESS;
}

CUresult free_device(CUdeviceptr dptr) {
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  auto it = s.mappings.find(dptr);
  if (it == s.mappings.end() || !it->second.phys->from_alloc) return CUDA_ERROR_INVALID_VALUE;
  size_t size = it->second.size;
  arena::unmap(dptr, size);
  return arena::unreserve(dptr, size);
}

namespace {

CUresult alloc(CUdeviceptr *dptr, size_t bytes) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (!dptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
  return alloc_device(bytes, dptr);
}

CUresult free_alloc(CUdeviceptr dptr) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (dptr == 0) return CUDA_SUCCESS;
  synchronize_all_streams();  // cuMemFree synchronises implicitly on the real driver too
  return free_device(dptr);
}

}  // namespace

bool is_pinned_host(const void *p, size_t n) {
  auto a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard lk(g_host_mutex);
  auto *r = find_host(a);
  return r && a + n <= r->first + r->second.size;
}

bool is_device(uintptr_t p, size_t n) {
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  return arena::covers(p, n ? n : 1);
}

}  // namespace phos::cudasim::memory

using namespace phos::cudasim;
using namespace phos::cudasim::memory;

CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize) { return alloc(dptr, bytesize); }
CUresult cuMemFree_v2(CUdeviceptr dptr) { return free_alloc(dptr); }

CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t width, size_t height,
                            unsigned int elementSize) {
  if (!pPitch || width == 0 || height == 0) return CUDA_ERROR_INVALID_VALUE;
  if (elementSize != 4 && elementSize != 8 && elementSize != 16) return CUDA_ERROR_INVALID_VALUE;
  *pPitch = align_up(width, 512);  // texture alignment of Hopper parts
  return alloc(dptr, *pPitch * height);
}

CUresult cuMemGetInfo_v2(size_t *free, size_t *total) {
  if (CUresult r = require_context()) return r;
  if (!free || !total) return CUDA_ERROR_INVALID_VALUE;
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  *total = options().mem_bytes;
  *free = *total - s.used[current_device()];
  return CUDA_SUCCESS;
}

// A cuMemAlloc pointer answers with the requested size; a VMM pointer with its mapping, as the real
// driver does (interception.md §5).
CUresult cuMemGetAddressRange_v2(CUdeviceptr *pbase, size_t *psize, CUdeviceptr dptr) {
  if (CUresult r = require_context()) return r;
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  const arena::Mapping *m = arena::find_mapping(dptr);
  if (!m || (m->alloc_bytes && dptr >= m->va + m->alloc_bytes)) return CUDA_ERROR_NOT_FOUND;
  if (pbase) *pbase = m->va;
  if (psize) *psize = m->alloc_bytes ? m->alloc_bytes : m->size;
  return CUDA_SUCCESS;
}

CUresult cuMemAllocHost_v2(void **pp, size_t bytesize) { return host_alloc(pp, bytesize, 0); }
CUresult cuMemHostAlloc(void **pp, size_t bytesize, unsigned int Flags) {
  return host_alloc(pp, bytesize, Flags);
}

CUresult cuMemFreeHost(void *p) {
  if (CUresult r = require_context()) return r;
  std::lock_guard lk(g_host_mutex);
  auto it = g_host.find(reinterpret_cast<uintptr_t>(p));
  if (it == g_host.end() || !it->second.owned) return CUDA_ERROR_INVALID_VALUE;
  munmap(p, it->second.size);
  g_host.erase(it);
  return CUDA_SUCCESS;
}

CUresult cuMemHostRegister_v2(void *p, size_t bytesize, unsigned int Flags) {
  return host_register(p, bytesize, Flags);
}
CUresult cuMemHostRegister(void *p, size_t bytesize, unsigned int Flags) {
  return host_register(p, bytesize, Flags);
}

CUresult cuMemHostUnregister(void *p) {
  if (CUresult r = require_context()) return r;
  std::lock_guard lk(g_host_mutex);
  auto it = g_host.find(reinterpret_cast<uintptr_t>(p));
  if (it == g_host.end() || it->second.owned) return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
  g_host.erase(it);
  return CUDA_SUCCESS;
}

CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr *pdptr, void *p, unsigned int Flags) {
  if (CUresult r = require_context()) return r;
  if (!pdptr || Flags) return CUDA_ERROR_INVALID_VALUE;
  if (!is_pinned_host(p, 1)) return CUDA_ERROR_INVALID_VALUE;
  *pdptr = reinterpret_cast<CUdeviceptr>(p);  // one address space: host and device pointer coincide
  return CUDA_SUCCESS;
}

CUresult cuMemHostGetFlags(unsigned int *pFlags, void *p) {
  if (CUresult r = require_context()) return r;
  std::lock_guard lk(g_host_mutex);
  auto *h = find_host(reinterpret_cast<uintptr_t>(p));
  if (!pFlags || !h) return CUDA_ERROR_INVALID_VALUE;
  *pFlags = h->second.flags;
  return CUDA_SUCCESS;
}

// ---- pointer attributes ----
namespace {

CUresult device_attribute(void *data, CUpointer_attribute a, const arena::Mapping &m) {
  switch (a) {
    case CU_POINTER_ATTRIBUTE_CONTEXT:
      *static_cast<CUcontext *>(data) = m.phys->ctx ? m.phys->ctx : primary_context(m.phys->device);
      break;
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
      *static_cast<unsigned *>(data) = CU_MEMORYTYPE_DEVICE; break;
    case CU_POINTER_ATTRIBUTE_DEVICE_POINTER: break;  // filled by caller
    case CU_POINTER_ATTRIBUTE_HOST_POINTER: *static_cast<void **>(data) = nullptr; break;
    case CU_POINTER_ATTRIBUTE_IS_MANAGED: *static_cast<int *>(data) = 0; break;
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL: *static_cast<int *>(data) = m.phys->device; break;
    case CU_POINTER_ATTRIBUTE_BUFFER_ID: *static_cast<unsigned long long *>(data) = m.buffer_id; break;
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR: *static_cast<CUdeviceptr *>(data) = m.va; break;
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
      *static_cast<size_t *>(data) = m.alloc_bytes ? m.alloc_bytes : m.size; break;
    case CU_POINTER_ATTRIBUTE_MAPPED: *static_cast<int *>(data) = 1; break;
    case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE:
      *static_cast<int *>(data) = 0; break;  // cuIpc* is not simulated
    case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES:
      *static_cast<unsigned long long *>(data) = m.phys->prop.requestedHandleTypes; break;
    case CU_POINTER_ATTRIBUTE_ACCESS_FLAGS: {  // VMM: as granted to the current context's device
      int prot = m.phys->from_alloc ? m.prot : m.access[current_device()];
      *static_cast<unsigned *>(data) = prot & PROT_WRITE ? CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READWRITE
                                       : prot & PROT_READ ? CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READ
                                                          : CU_POINTER_ATTRIBUTE_ACCESS_FLAG_NONE;
      break;
    }
    case CU_POINTER_ATTRIBUTE_SYNC_MEMOPS: *static_cast<int *>(data) = 1; break;
    case CU_POINTER_ATTRIBUTE_P2P_TOKENS: return CUDA_ERROR_NOT_SUPPORTED;
    default: *static_cast<int *>(data) = 0; break;
  }
  return CUDA_SUCCESS;
}

CUresult host_attribute(void *data, CUpointer_attribute a, uintptr_t base, size_t size) {
  switch (a) {
    case CU_POINTER_ATTRIBUTE_CONTEXT: *static_cast<CUcontext *>(data) = primary_context(current_device()); break;
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE: *static_cast<unsigned *>(data) = CU_MEMORYTYPE_HOST; break;
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL: *static_cast<int *>(data) = current_device(); break;
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR: *static_cast<CUdeviceptr *>(data) = base; break;
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE: *static_cast<size_t *>(data) = size; break;
    case CU_POINTER_ATTRIBUTE_MAPPED: *static_cast<int *>(data) = 1; break;
    default: *static_cast<int *>(data) = 0; break;
  }
  return CUDA_SUCCESS;
}

CUresult pointer_attribute(void *data, CUpointer_attribute a, CUdeviceptr ptr) {
  if (!data) return CUDA_ERROR_INVALID_VALUE;
  {
    arena::State &s = arena::state();
    std::lock_guard lk(s.m);
    if (const arena::Mapping *m = arena::find_mapping(ptr)) {
      if (a == CU_POINTER_ATTRIBUTE_DEVICE_POINTER) {
        *static_cast<CUdeviceptr *>(data) = ptr;
        return CUDA_SUCCESS;
      }
      return device_attribute(data, a, *m);
    }
  }
  std::lock_guard lk(g_host_mutex);
  auto *h = find_host(ptr);
  if (!h) return CUDA_ERROR_INVALID_VALUE;
  if (a == CU_POINTER_ATTRIBUTE_DEVICE_POINTER || a == CU_POINTER_ATTRIBUTE_HOST_POINTER) {
    *static_cast<CUdeviceptr *>(data) = ptr;
    return CUDA_SUCCESS;
  }
  return host_attribute(data, a, h->first, h->second.size);
}

}  // namespace

CUresult cuPointerGetAttribute(void *data, CUpointer_attribute attribute, CUdeviceptr ptr) {
  if (CUresult r = require_init()) return r;
  return pointer_attribute(data, attribute, ptr);
}

// Unlike the single-attribute call, unknown pointers are not an error here: memory type reads 0.
CUresult cuPointerGetAttributes(unsigned int n, CUpointer_attribute *attrs, void **data, CUdeviceptr ptr) {
  if (CUresult r = require_init()) return r;
  if (!attrs || !data) return CUDA_ERROR_INVALID_VALUE;
  for (unsigned i = 0; i < n; i++) {
    if (!data[i]) continue;
    if (pointer_attribute(data[i], attrs[i], ptr) != CUDA_SUCCESS) {
      if (attrs[i] == CU_POINTER_ATTRIBUTE_CONTEXT) *static_cast<CUcontext *>(data[i]) = nullptr;
      else if (attrs[i] == CU_POINTER_ATTRIBUTE_DEVICE_POINTER || attrs[i] == CU_POINTER_ATTRIBUTE_HOST_POINTER)
        *static_cast<void **>(data[i]) = nullptr;
      else *static_cast<unsigned *>(data[i]) = 0;
    }
  }
  return CUDA_SUCCESS;
}
