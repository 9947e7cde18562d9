// The VMM allocator: one VA region at PHOS_VA_BASE, physical memory in large POSIX-fd slabs mapped into
// it, cuMemAlloc* sub-allocated from the slabs; the app's own VMM calls tracked (and its reservations
// carved from the region) so everything can later be dropped and re-mapped at the same addresses.
#pragma once
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include <cuda.h>

namespace phos::hijack {

/// Everything the process holds on the device, as far as libphos can see; a freeze compares the sum
/// with what the driver reports and takes the safe path when something is unexplained.
struct Accounting {
  uint64_t slab_bytes;          ///< physical memory in libphos slabs
  uint64_t slab_used_bytes;     ///< of which handed out to the app (rounded reservations)
  uint64_t alloc_bytes;         ///< bytes the app asked for (cuMemAlloc sizes)
  uint64_t app_handle_bytes;    ///< the app's own cuMemCreate handles, alive
  uint64_t passthrough_bytes;   ///< served by the driver directly (pools, other devices, no region): not droppable
  uint64_t internal_bytes;      ///< libphos's own device buffers (hash helper)
  uint64_t driver_used_bytes;   ///< cuMemGetInfo total - free, now
  uint64_t baseline_used_bytes; ///< the same at region setup, before the first slab (context + other tenants)
  int64_t unexplained_bytes;    ///< driver_used - baseline - everything above (may be negative)
  uint32_t slabs, allocations, app_handles, app_mappings, passthrough_allocs;
  bool region_ok;
};

struct RegionInfo {
  uint64_t base, size;
  CUcontext ctx;
  CUdevice dev;
};

/// The region, if it was reserved at the requested base. pre: none. Returns false in pass-through mode.
bool vmm_region(RegionInfo* out);
/// Fills `a`; queries the driver for cuMemGetInfo in the region's context. Returns 0 or a CUresult.
int vmm_accounting(Accounting* a);
/// The VMM lock: held while libphos reads device memory (hash rounds) so nothing is unmapped under it.
std::mutex& vmm_lock();
/// Calls fn(id, va, size, handle, kind, device) for every live slab ("slab") and exportable app handle
/// ("app", va 0). pre: vmm_lock held.
void vmm_for_each_physical(
    const std::function<void(uint64_t, uint64_t, uint64_t, CUmemGenericAllocationHandle, const char*, int)>& fn);
/// The context of each device the app allocated on (the first one seen there); a freeze drains them all.
std::vector<CUcontext> vmm_device_contexts();
/// Adds libphos-internal device bytes to the accounting.
void vmm_note_internal(int64_t delta);

// Freeze / thaw / snapshot, driven by freeze.cpp with the gate closed, the GPU drained and the region's
// context current. Only memory the keeper holds (slabs; app handles exported as POSIX fds) is dropped;
// anything else stays mapped and is left to the driver checkpoint (the safe path).
/// Unmaps every slab and keeper-held app mapping, then releases libphos's references (VA reservations
/// stay). All or nothing: on failure everything is re-mapped and `err` says what failed.
bool vmm_drop(std::string* err);
/// Allocations dropped and not yet brought back.
uint32_t vmm_dropped_count();
/// Imports `fd` (the caller keeps and closes it) for allocation `id` and maps it where it was, with the
/// access it had. Returns 0 done, 1 already present, -1 driver failure, -2 unknown id (`err` says).
int vmm_thaw_one(uint64_t id, int fd, std::string* err);
/// Size of allocation `id` and whether it is a slab (else an app handle). False when unknown.
bool vmm_alloc_info(uint64_t id, uint64_t* size, bool* is_slab);
/// Enqueues a device-to-device copy of allocation `id` into [dst, dst+dst_size) on `st` and adds its
/// size to `bytes`. 0, or -1/-2 as vmm_thaw_one.
int vmm_copy_out(uint64_t id, CUdeviceptr dst, uint64_t dst_size, CUstream st, uint64_t* bytes, std::string* err);

// Hooks (exports.cpp forwards here).
CUresult mem_alloc(CUdeviceptr* p, size_t size);
CUresult mem_alloc_pitch(CUdeviceptr* p, size_t* pitch, size_t width, size_t height, unsigned elem);
CUresult mem_free(CUdeviceptr p);
CUresult mem_get_address_range(CUdeviceptr* base, size_t* size, CUdeviceptr p);
CUresult mem_get_info(size_t* free, size_t* total);
CUresult pointer_get_attribute(void* data, CUpointer_attribute attr, CUdeviceptr p);
CUresult pointer_get_attributes(unsigned n, CUpointer_attribute* attrs, void** data, CUdeviceptr p);
CUresult mem_alloc_async(CUdeviceptr* p, size_t size, CUstream s, bool ptsz);
CUresult mem_alloc_from_pool_async(CUdeviceptr* p, size_t size, CUmemoryPool pool, CUstream s, bool ptsz);
CUresult mem_free_async(CUdeviceptr p, CUstream s, bool ptsz);
CUresult mem_create(CUmemGenericAllocationHandle* h, size_t size, const CUmemAllocationProp* prop,
                    unsigned long long flags);
CUresult mem_release(CUmemGenericAllocationHandle h);
CUresult mem_map(CUdeviceptr p, size_t size, size_t offset, CUmemGenericAllocationHandle h, unsigned long long flags);
CUresult mem_unmap(CUdeviceptr p, size_t size);
CUresult mem_set_access(CUdeviceptr p, size_t size, const CUmemAccessDesc* desc, size_t count);
CUresult mem_address_reserve(CUdeviceptr* p, size_t size, size_t align, CUdeviceptr addr, unsigned long long flags);
CUresult mem_address_free(CUdeviceptr p, size_t size);

}  // namespace phos::hijack
