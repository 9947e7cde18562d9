// VA region, memfd-backed physical allocations and mappings (see arena.h). The region is one
// PROT_NONE MAP_NORESERVE mapping; every unmap puts PROT_NONE back, so the kernel never places host
// memory inside it and CRIU sees plain anonymous memory with no pages.
#include "arena.h"

#include <sys/mman.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "log.h"
#include "options.h"

namespace phos::cudasim::arena {
namespace {

void *mmap_noreplace(uintptr_t addr, size_t size) {
  void *p = mmap(reinterpret_cast<void *>(addr), size, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  if (reinterpret_cast<uintptr_t>(p) != addr) {  // kernels before 4.17 ignore the flag
    munmap(p, size);
    return nullptr;
  }
  return p;
}

// First fit in [lo, hi) of the region's free list, aligned.
bool take_free(size_t size, size_t align, uintptr_t lo, uintptr_t hi, uintptr_t *out) {
  State &s = state();
  auto it = s.free_va.upper_bound(lo);
  if (it != s.free_va.begin()) --it;
  for (; it != s.free_va.end() && it->first < hi; ++it) {
    uintptr_t start = align_up(std::max<uintptr_t>(it->first, lo), align);
    uintptr_t fend = it->first + it->second;
    uintptr_t end = std::min<uintptr_t>(fend, hi);
    if (start + size > end || start + size < start) continue;
    uintptr_t fstart = it->first;
    s.free_va.erase(it);
    if (start > fstart) s.free_va[fstart] = start - fstart;
    if (start + size < fend) s.free_va[start + size] = fend - (start + size);
    *out = start;
    return true;
  }
  return false;
}

// Takes exactly [addr, addr+size) if it is free in the region.
bool take_exact(uintptr_t addr, size_t size) {
  State &s = state();
  auto it = s.free_va.upper_bound(addr);
  if (it == s.free_va.begin()) return false;
  --it;
  uintptr_t fstart = it->first, fend = it->first + it->second;
  if (addr < fstart || addr + size > fend) return false;
  s.free_va.erase(it);
  if (addr > fstart) s.free_va[fstart] = addr - fstart;
  if (addr + size < fend) s.free_va[addr + size] = fend - (addr + size);
  return true;
}

void give_back(uintptr_t addr, size_t size) {
  State &s = state();
  auto [it, ok] = s.free_va.emplace(addr, size);
  auto next = std::next(it);
  if (next != s.free_va.end() && it->first + it->second == next->first) {
    it->second += next->second;
    s.free_va.erase(next);
  }
  if (it != s.free_va.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second == it->first) {
      prev->second += it->second;
      s.free_va.erase(it);
    }
  }
}

bool in_region(uintptr_t a, size_t size) {
  State &s = state();
  return a >= s.region_base && a + size <= s.region_base + s.region_size && a + size >= a;
}

}  // namespace

State &state() {
  static State *s = new State;  // leaked: stream workers may touch memory during exit
  return *s;
}

void init_region() {
  State &s = state();
  const Options &o = options();
  s.sub_size = align_up(std::max<size_t>(o.mem_bytes * 16, size_t{64} << 30), kGranularity);
  s.region_size = s.sub_size * static_cast<size_t>(std::max(1, device_count()));
  uintptr_t base = o.va_base;
  void *p = mmap_noreplace(base, s.region_size);
  if (!p) {
    CUSIM_WARN("device VA region at 0x%lx is taken; letting the kernel choose (device pointers will "
               "not be stable across runs; set PHOS_SIM_VA_BASE)", static_cast<unsigned long>(base));
    p = mmap(nullptr, s.region_size + kGranularity, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      CUSIM_ERROR("cannot reserve %zu bytes of device VA: %s", s.region_size, strerror(errno));
      s.region_size = 0;
      return;
    }
    base = align_up(reinterpret_cast<uintptr_t>(p), kGranularity);
  }
  s.region_base = base;
  s.free_va[base] = s.region_size;
  CUSIM_INFO("device VA region 0x%lx-0x%lx", static_cast<unsigned long>(base),
             static_cast<unsigned long>(base + s.region_size));
}

void placeholder(uintptr_t va, size_t size) {
  void *p = mmap(reinterpret_cast<void *>(va), size, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  if (p == MAP_FAILED) CUSIM_ERROR("cannot re-reserve 0x%lx: %s", va, strerror(errno));
}

CUresult reserve(size_t size, size_t align, uintptr_t hint, int dev, uintptr_t *out) {
  State &s = state();
  align = std::max(align, kGranularity);
  if (hint && hint % kPage == 0) {
    if (in_region(hint, size) ? take_exact(hint, size) : mmap_noreplace(hint, size) != nullptr) {
      s.reservations[hint] = Reservation{size, !in_region(hint, size)};
      *out = hint;
      return CUDA_SUCCESS;
    }
  }
  // Hint taken or absent: another address with success, like the real driver.
  uintptr_t lo = s.region_base + s.sub_size * static_cast<size_t>(dev);
  if (!take_free(size, align, lo, lo + s.sub_size, out)) return CUDA_ERROR_OUT_OF_MEMORY;
  s.reservations[*out] = Reservation{size, false};
  return CUDA_SUCCESS;
}

CUresult unreserve(uintptr_t va, size_t size) {
  State &s = state();
  auto it = s.reservations.find(va);
  if (it == s.reservations.end() || it->second.size != size) return CUDA_ERROR_INVALID_VALUE;
  auto m = s.mappings.lower_bound(va);
  if (m != s.mappings.end() && m->first < va + size) return CUDA_ERROR_INVALID_VALUE;  // still mapped
  if (it->second.external) munmap(reinterpret_cast<void *>(va), size);
  else give_back(va, size);
  s.reservations.erase(it);
  return CUDA_SUCCESS;
}

CUresult create_phys(size_t size, const CUmemAllocationProp &prop, Phys **out) {
  State &s = state();
  const int dev = prop.location.id;
  if (s.used[dev] + size > options().mem_bytes) return CUDA_ERROR_OUT_OF_MEMORY;
  int fd = memfd_create("cudasim-device", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, static_cast<off_t>(size)) != 0) {
    CUSIM_ERROR("memfd for %zu bytes failed: %s", size, strerror(errno));
    if (fd >= 0) close(fd);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  auto p = std::make_unique<Phys>();
  p->handle = s.next_handle++;
  p->fd = fd;
  p->size = size;
  p->prop = prop;
  p->device = dev;
  s.used[dev] += size;
  *out = p.get();
  s.phys[p->handle] = std::move(p);
  return CUDA_SUCCESS;
}

CUresult import_phys(int fd, Phys **out) {
  State &s = state();
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0 || st.st_size % kPage)
    return CUDA_ERROR_INVALID_VALUE;
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);  // the caller keeps (and closes) its fd
  if (own < 0) return CUDA_ERROR_OUT_OF_MEMORY;
  auto p = std::make_unique<Phys>();
  p->handle = s.next_handle++;
  p->fd = own;
  p->size = static_cast<size_t>(st.st_size);
  p->imported = true;
  p->prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  p->prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  p->prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  *out = p.get();
  s.phys[p->handle] = std::move(p);
  return CUDA_SUCCESS;
}

void drop_phys_if_unused(Phys *p) {
  if (p->handle_refs > 0 || p->map_count > 0) return;
  State &s = state();
  if (p->fd >= 0) close(p->fd);
  if (p->saved) munmap(p->saved, p->size);
  if (!p->imported) s.used[p->device] -= p->size;
  s.phys.erase(p->handle);
}

bool map_fd(const Phys *p, uintptr_t va, size_t size, size_t offset, int prot) {
  void *r = mmap(reinterpret_cast<void *>(va), size, prot, MAP_SHARED | MAP_FIXED, p->fd,
                 static_cast<off_t>(offset));
  if (r == MAP_FAILED) {
    CUSIM_ERROR("mapping device memory at 0x%lx failed: %s", static_cast<unsigned long>(va),
                strerror(errno));
    return false;
  }
  return true;
}

CUresult map(uintptr_t va, size_t size, size_t offset, Phys *p, int prot, Mapping **out) {
  State &s = state();
  uintptr_t rbase;
  const Reservation *r = find_reservation(va, &rbase);
  if (!r || va + size > rbase + r->size) return CUDA_ERROR_INVALID_VALUE;
  if (offset + size > p->size || offset + size < offset) return CUDA_ERROR_INVALID_VALUE;
  auto next = s.mappings.lower_bound(va);
  if (next != s.mappings.end() && next->first < va + size) return CUDA_ERROR_INVALID_VALUE;
  if (next != s.mappings.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.size > va) return CUDA_ERROR_INVALID_VALUE;
  }
  if (p->fd < 0 || !map_fd(p, va, size, offset, prot)) return CUDA_ERROR_OUT_OF_MEMORY;
  Mapping &m = s.mappings[va];
  m = Mapping{};
  m.va = va;
  m.size = size;
  m.offset = offset;
  m.phys = p;
  m.prot = prot;
  m.buffer_id = s.next_buffer_id++;
  if (prot != PROT_NONE)  // cuMemAlloc: the owning device (others reach it through peer access)
    m.access[p->device] = static_cast<unsigned char>(prot);
  p->map_count++;
  if (out) *out = &m;
  return CUDA_SUCCESS;
}

CUresult unmap(uintptr_t va, size_t size) {
  State &s = state();
  auto it = s.mappings.lower_bound(va);
  // Must cover whole mappings exactly, as cuMemUnmap requires.
  uintptr_t end = va + size, cur = va;
  auto first = it;
  for (; it != s.mappings.end() && it->first < end; ++it) {
    if (it->first != cur) return CUDA_ERROR_INVALID_VALUE;
    cur += it->second.size;
  }
  if (cur != end || first == it) return CUDA_ERROR_INVALID_VALUE;
  placeholder(va, size);
  for (auto m = first; m != it;) {
    Phys *p = m->second.phys;
    p->map_count--;
    m = s.mappings.erase(m);
    drop_phys_if_unused(p);
  }
  return CUDA_SUCCESS;
}

CUresult set_access(uintptr_t va, size_t size, int dev, int prot) {
  State &s = state();
  uintptr_t end = va + size, cur = va;
  auto it = s.mappings.find(va);
  for (; cur < end; ++it) {
    if (it == s.mappings.end() || it->first != cur) return CUDA_ERROR_INVALID_VALUE;
    cur += it->second.size;
  }
  if (cur != end) return CUDA_ERROR_INVALID_VALUE;
  for (it = s.mappings.find(va); it != s.mappings.end() && it->first < end; ++it) {
    it->second.access[dev] = static_cast<unsigned char>(prot);
    int any = PROT_NONE;
    for (unsigned char a : it->second.access) any |= a;
    it->second.prot = any;
    if (!it->second.phys->saved)  // while checkpointed the new access applies at restore
      mprotect(reinterpret_cast<void *>(it->first), it->second.size, any);
  }
  return CUDA_SUCCESS;
}

const Mapping *find_mapping(uintptr_t p) {
  State &s = state();
  auto it = s.mappings.upper_bound(p);
  if (it == s.mappings.begin()) return nullptr;
  --it;
  return p < it->first + it->second.size ? &it->second : nullptr;
}

const Reservation *find_reservation(uintptr_t p, uintptr_t *base) {
  State &s = state();
  auto it = s.reservations.upper_bound(p);
  if (it == s.reservations.begin()) return nullptr;
  --it;
  if (p >= it->first + it->second.size) return nullptr;
  *base = it->first;
  return &it->second;
}

bool covers(uintptr_t p, size_t n) {
  // Adjacent mappings combine only inside one reservation (PyTorch's expandable segments); two
  // cuMemAlloc allocations that happen to touch do not.
  uintptr_t rbase, end = p + n;
  const Reservation *r = find_reservation(p, &rbase);
  if (!r || end > rbase + r->size || end < p) return false;
  while (p < end) {
    const Mapping *m = find_mapping(p);
    if (!m || m->prot == PROT_NONE) return false;
    if (m->alloc_bytes) return end <= m->va + m->alloc_bytes;
    p = m->va + m->size;
  }
  return true;
}

}  // namespace phos::cudasim::arena
