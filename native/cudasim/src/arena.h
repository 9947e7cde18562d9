// The device address space: a reserved VA region (PROT_NONE, never left with holes) cut into one
// equal sub-region per device ordinal (cuMemAlloc on device d and hint-less reservations made with d
// current land in d's), "physical"
// allocations backed by memfds, and the mappings between them. memory.cpp (cuMemAlloc), vmm.cpp
// (cuMem* VMM) and checkpoint.cpp all work through this one table, under one mutex.
#pragma once

#include <sys/mman.h>

#include <map>
#include <memory>
#include <mutex>

#include "internal.h"

namespace phos::cudasim::arena {

// One physical allocation: what CUmemGenericAllocationHandle names.
struct Phys {
  CUmemGenericAllocationHandle handle = 0;
  int fd = -1;                  // memfd (or an imported fd); -1 for cuMemAlloc memory once mapped
  size_t size = 0;
  int handle_refs = 1;          // cuMemCreate/Import/RetainAllocationHandle minus cuMemRelease;
                                // the memory is freed when this and map_count are both zero
  bool from_alloc = false;      // backs a cuMemAlloc (never exported, fd closed after mapping)
  bool imported = false;
  int map_count = 0;
  CUmemAllocationProp prop{};   // prop.location.id: the owning device ordinal
  int device = 0;               // owning device ordinal (budget, pointer attributes, peer checks)
  CUcontext ctx = nullptr;      // cuMemAlloc: the allocating context
  void *saved = nullptr;        // private anonymous copy while CHECKPOINTED (see checkpoint.cpp)
};

struct Mapping {
  uintptr_t va = 0;
  size_t size = 0;
  size_t offset = 0;            // into phys
  Phys *phys = nullptr;
  int prot = PROT_NONE;         // what the CPU mapping has: the union of `access` (PROT_NONE until
                                // cuMemSetAccess; cuMemAlloc maps read-write)
  unsigned char access[kMaxGpus] = {};  // VMM: per-device PROT_* granted by cuMemSetAccess
  size_t alloc_bytes = 0;       // cuMemAlloc: the size the app asked for (cuMemGetAddressRange)
  unsigned long long buffer_id = 0;
};

struct Reservation {
  size_t size = 0;
  bool external = false;        // placed at a hint outside the region with MAP_FIXED_NOREPLACE
};

struct State {
  std::mutex m;
  uintptr_t region_base = 0;
  size_t region_size = 0;                         // all devices
  size_t sub_size = 0;                            // one device's sub-region
  std::map<uintptr_t, size_t> free_va;            // region free list: start -> length
  std::map<uintptr_t, Reservation> reservations;  // start -> reservation
  std::map<uintptr_t, Mapping> mappings;          // start -> mapping
  std::map<CUmemGenericAllocationHandle, std::unique_ptr<Phys>> phys;
  size_t used[kMaxGpus] = {};                     // per device: physical bytes held (non-imported)
  CUmemGenericAllocationHandle next_handle = 1;
  unsigned long long next_buffer_id = 1;
};

State &state();

// All functions below: pre: state().m held.
void init_region();  // at cuInit; once
// Without a usable hint, the first fit in device `dev`'s sub-region.
CUresult reserve(size_t size, size_t align, uintptr_t hint, int dev, uintptr_t *out);
CUresult unreserve(uintptr_t va, size_t size);
CUresult create_phys(size_t size, const CUmemAllocationProp &prop, Phys **out);  // on prop.location.id
CUresult import_phys(int fd, Phys **out);
void drop_phys_if_unused(Phys *p);
CUresult map(uintptr_t va, size_t size, size_t offset, Phys *p, int prot, Mapping **out);
CUresult unmap(uintptr_t va, size_t size);
// Sets device `dev`'s access to the whole mappings covering [va, va+size) (CPU protection = union).
CUresult set_access(uintptr_t va, size_t size, int dev, int prot);
const Mapping *find_mapping(uintptr_t p);        // mapping containing p
const Reservation *find_reservation(uintptr_t p, uintptr_t *base);
// True when [p, p+n) is covered by accessible device mappings (adjacent ones may be combined).
bool covers(uintptr_t p, size_t n);
// Replaces [va, va+size) with a fresh PROT_NONE reservation mapping (keeps the VA owned).
void placeholder(uintptr_t va, size_t size);
// Maps p's memfd at va with prot. pre: p->fd >= 0.
bool map_fd(const Phys *p, uintptr_t va, size_t size, size_t offset, int prot);

}  // namespace phos::cudasim::arena
