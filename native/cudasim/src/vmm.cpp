// Virtual memory management: reservations (hint honoured only when the range is empty), physical
// allocations, mappings, access, and POSIX-fd shareable handles. The fd handed out by an export
// is a dup of the allocation's memfd, so an importing process maps the very same pages.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arena.h"
#include "context.h"
#include "stream.h"

using namespace phos::cudasim;

namespace {

// INVALID_VALUE for a malformed prop, INVALID_DEVICE for a device ordinal the process does not have.
CUresult check_prop(const CUmemAllocationProp *prop) {
  if (!prop || prop->type != CU_MEM_ALLOCATION_TYPE_PINNED ||
      prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
    return CUDA_ERROR_INVALID_VALUE;
  return valid_device(prop->location.id) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

bool aligned(size_t v) { return v % kGranularity == 0; }

arena::Phys *find_phys(CUmemGenericAllocationHandle h) {
  auto &all = arena::state().phys;
  auto it = all.find(h);
  return it == all.end() || it->second->from_alloc ? nullptr : it->second.get();
}

int prot_of(CUmemAccess_flags f) {
  switch (f) {
    case CU_MEM_ACCESS_FLAGS_PROT_READ: return PROT_READ;
    case CU_MEM_ACCESS_FLAGS_PROT_READWRITE: return PROT_READ | PROT_WRITE;
    default: return PROT_NONE;
  }
}

}  // namespace

CUresult cuMemGetAllocationGranularity(size_t *granularity, const CUmemAllocationProp *prop,
                                       CUmemAllocationGranularity_flags) {
  if (CUresult r = require_init()) return r;
  if (!granularity) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_prop(prop)) return r;
  *granularity = kGranularity;  // minimum = recommended on H200
  return CUDA_SUCCESS;
}

CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment, CUdeviceptr addr,
                             unsigned long long flags) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (!ptr || size == 0 || size % kPage || flags) return CUDA_ERROR_INVALID_VALUE;
  if (alignment & (alignment - 1)) return CUDA_ERROR_INVALID_VALUE;
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  uintptr_t va;
  if (CUresult r = arena::reserve(size, alignment, addr, current_device(), &va)) return r;
  *ptr = va;
  return CUDA_SUCCESS;
}

CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  return arena::unreserve(ptr, size);
}

CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
                     unsigned long long flags) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (!handle || size == 0 || !aligned(size) || flags) return CUDA_ERROR_INVALID_VALUE;
  if (CUresult r = check_prop(prop)) return r;
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  arena::Phys *p;
  if (CUresult r = arena::create_phys(size, *prop, &p)) return r;
  *handle = p->handle;
  return CUDA_SUCCESS;
}

CUresult cuMemRelease(CUmemGenericAllocationHandle handle) {
  CUSIM_API_ENTER();
  if (CUresult r = require_init()) return r;
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  arena::Phys *p = find_phys(handle);
  if (!p || p->handle_refs == 0) return CUDA_ERROR_INVALID_VALUE;
  p->handle_refs--;
  arena::drop_phys_if_unused(p);
  return CUDA_SUCCESS;
}

CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                  unsigned long long flags) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (size == 0 || flags || !aligned(ptr) || !aligned(size) || !aligned(offset))
    return CUDA_ERROR_INVALID_VALUE;
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  arena::Phys *p = find_phys(handle);
  if (!p || p->handle_refs == 0) return CUDA_ERROR_INVALID_HANDLE;
  return arena::map(ptr, size, offset, p, PROT_NONE, nullptr);  // usable after cuMemSetAccess
}

// Work still in flight may touch the range; the real driver leaves that to the app, but on the CPU
// it would be a segfault, so drain first.
CUresult cuMemUnmap(CUdeviceptr ptr, size_t size) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  synchronize_all_streams();
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  const arena::Mapping *m = arena::find_mapping(ptr);
  if (m && m->phys->from_alloc) return CUDA_ERROR_INVALID_VALUE;
  return arena::unmap(ptr, size);
}

CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (!desc || count == 0 || size == 0) return CUDA_ERROR_INVALID_VALUE;
  for (size_t i = 0; i < count; i++) {  // all checked before any applies
    if (desc[i].location.type != CU_MEM_LOCATION_TYPE_DEVICE || !valid_device(desc[i].location.id))
      return CUDA_ERROR_INVALID_DEVICE;
  }
  // Each listed device gets its flags; devices not listed keep theirs.
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  for (size_t i = 0; i < count; i++) {
    if (CUresult r = arena::set_access(ptr, size, desc[i].location.id, prot_of(desc[i].flags))) return r;
  }
  return CUDA_SUCCESS;
}

CUresult cuMemGetAccess(unsigned long long *flags, const CUmemLocation *location, CUdeviceptr ptr) {
  if (CUresult r = require_init()) return r;
  if (!flags || !location) return CUDA_ERROR_INVALID_VALUE;
  if (location->type != CU_MEM_LOCATION_TYPE_DEVICE || !valid_device(location->id))
    return CUDA_ERROR_INVALID_DEVICE;
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  const arena::Mapping *m = arena::find_mapping(ptr);
  if (!m) return CUDA_ERROR_INVALID_VALUE;
  int prot = m->access[location->id];
  *flags = prot & PROT_WRITE ? CU_MEM_ACCESS_FLAGS_PROT_READWRITE
           : prot & PROT_READ ? CU_MEM_ACCESS_FLAGS_PROT_READ
                              : CU_MEM_ACCESS_FLAGS_PROT_NONE;
  return CUDA_SUCCESS;
}

CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr) {
  if (CUresult r = require_init()) return r;
  if (!handle) return CUDA_ERROR_INVALID_VALUE;
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  const arena::Mapping *m = arena::find_mapping(reinterpret_cast<uintptr_t>(addr));
  if (!m || m->phys->from_alloc) return CUDA_ERROR_INVALID_VALUE;
  m->phys->handle_refs++;
  *handle = m->phys->handle;
  return CUDA_SUCCESS;
}

CUresult cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp *prop, CUmemGenericAllocationHandle handle) {
  if (CUresult r = require_init()) return r;
  if (!prop) return CUDA_ERROR_INVALID_VALUE;
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  arena::Phys *p = find_phys(handle);
  if (!p) return CUDA_ERROR_INVALID_VALUE;
  *prop = p->prop;
  return CUDA_SUCCESS;
}

// The caller owns the returned fd (a dup of the memfd, not close-on-exec so it survives exec).
CUresult cuMemExportToShareableHandle(void *shareableHandle, CUmemGenericAllocationHandle handle,
                                      CUmemAllocationHandleType handleType, unsigned long long flags) {
  CUSIM_API_ENTER();
  if (CUresult r = require_init()) return r;
  if (!shareableHandle || flags) return CUDA_ERROR_INVALID_VALUE;
  if (handleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) return CUDA_ERROR_NOT_SUPPORTED;
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  arena::Phys *p = find_phys(handle);
  if (!p || p->fd < 0) return CUDA_ERROR_INVALID_VALUE;
  if (!(p->prop.requestedHandleTypes & CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR))
    return CUDA_ERROR_INVALID_VALUE;  // not requested at cuMemCreate
  int fd = dup(p->fd);
  if (fd < 0) return CUDA_ERROR_OUT_OF_MEMORY;
  *static_cast<int *>(shareableHandle) = fd;
  return CUDA_SUCCESS;
}

CUresult cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *handle, void *osHandle,
                                        CUmemAllocationHandleType shHandleType) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (!handle) return CUDA_ERROR_INVALID_VALUE;
  if (shHandleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) return CUDA_ERROR_NOT_SUPPORTED;
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  arena::Phys *p;
  if (CUresult r = arena::import_phys(static_cast<int>(reinterpret_cast<intptr_t>(osHandle)), &p)) return r;
  p->device = current_device();  // the fd does not say; the importer's device owns it here
  p->prop.location.id = p->device;
  *handle = p->handle;
  return CUDA_SUCCESS;
}
