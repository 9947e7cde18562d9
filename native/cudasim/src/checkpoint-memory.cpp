// Device memory in and out of the target's host memory for Checkpoint/Restore (see header).
#include "checkpoint-memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "arena.h"
#include "log.h"
#include "options.h"

namespace phos::cudasim::checkpoint {
namespace {

bool read_all(int fd, void *dst, size_t n) {
  auto *p = static_cast<char *>(dst);
  for (size_t off = 0; off < n;) {
    ssize_t r = pread(fd, p + off, n - off, static_cast<off_t>(off));
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      return false;
    }
    off += static_cast<size_t>(r);
  }
  return true;
}

bool write_all(int fd, const void *src, size_t n) {
  auto *p = static_cast<const char *>(src);
  for (size_t off = 0; off < n;) {
    ssize_t r = pwrite(fd, p + off, n - off, static_cast<off_t>(off));
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      return false;
    }
    off += static_cast<size_t>(r);
  }
  return true;
}

// cuMemAlloc memory has no fd left (closed after mapping): read it through its one mapping.
const arena::Mapping *only_mapping(const arena::Phys *p) {
  for (auto &[va, m] : arena::state().mappings)
    if (m.phys == p) return &m;
  return nullptr;
}

CUresult save_one(arena::Phys *p) {
  // Populated up front: faulting page by page dominates the copy otherwise.
  void *buf = mmap(nullptr, p->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                   -1, 0);
  if (buf == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
  bool ok;
  if (p->fd >= 0) {
    ok = read_all(p->fd, buf, p->size);
  } else {
    const arena::Mapping *m = only_mapping(p);
    ok = m != nullptr;
    if (ok) memcpy(buf, reinterpret_cast<const void *>(m->va), m->size);
  }
  if (!ok) {
    CUSIM_ERROR("cannot read device allocation %llu (%zu bytes) for checkpoint", p->handle, p->size);
    munmap(buf, p->size);
    return CUDA_ERROR_UNKNOWN;
  }
  p->saved = buf;
  return CUDA_SUCCESS;
}

CUresult restore_one(arena::Phys *p) {
  int fd = memfd_create("cudasim-device", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, static_cast<off_t>(p->size)) != 0 || !write_all(fd, p->saved, p->size)) {
    CUSIM_ERROR("cannot re-create device allocation %llu (%zu bytes): %s", p->handle, p->size,
                strerror(errno));
    if (fd >= 0) close(fd);
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  p->fd = fd;
  return CUDA_SUCCESS;
}

// The driver's own device state (per-thread stacks, preemption buffers, ...), which the real driver's
// checkpoint copies to host memory like any allocation, in one anonymous mapping: on an H200 360 MiB of
// which 98 % are zero pages (bench/gpu/residue_probe.py). cudasim's is PHOS_SIM_CONTEXT_STATE bytes: one
// page of known non-zero bytes, the rest zero; the restore checks both, so whatever touched the copy in
// between (libphos drops its zero pages) must have kept its contents.
constexpr size_t kStatePage = 4096;
void *g_state_copy = nullptr;
size_t g_state_bytes = 0;

uint8_t state_byte(size_t i) { return static_cast<uint8_t>((i * 131 + 7) | 1); }

CUresult save_context_state() {
  size_t n = (options().context_state + kStatePage - 1) / kStatePage * kStatePage;
  void *buf = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (buf == MAP_FAILED) return CUDA_ERROR_OUT_OF_MEMORY;
  auto *b = static_cast<uint8_t *>(buf);
  for (size_t i = 0; i < kStatePage; ++i) b[i] = state_byte(i);
  memset(b + kStatePage, 0, n - kStatePage);  // written, as the driver writes its copy: present zero pages
  g_state_copy = buf;
  g_state_bytes = n;
  return CUDA_SUCCESS;
}

CUresult restore_context_state() {
  if (!g_state_copy) return CUDA_SUCCESS;
  const auto *b = static_cast<const uint8_t *>(g_state_copy);
  bool ok = true;
  for (size_t i = 0; i < kStatePage && ok; ++i) ok = b[i] == state_byte(i);
  static const uint8_t kZero[kStatePage] = {};
  for (size_t at = kStatePage; at < g_state_bytes && ok; at += kStatePage) ok = memcmp(b + at, kZero, kStatePage) == 0;
  munmap(g_state_copy, g_state_bytes);
  g_state_copy = nullptr;
  if (!ok) {
    CUSIM_ERROR("restore: the context state's host copy changed since the checkpoint");
    return CUDA_ERROR_UNKNOWN;
  }
  return CUDA_SUCCESS;
}

}  // namespace

CUresult save_device_memory() {
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  for (auto &[h, p] : s.phys) {
    if (CUresult r = save_one(p.get())) return r;
  }
  if (CUresult r = save_context_state()) return r;
  // Only after every copy succeeded: drop the shared mappings and the memfds.
  for (auto &[va, m] : s.mappings) arena::placeholder(va, m.size);
  for (auto &[h, p] : s.phys) {
    if (p->fd >= 0) close(p->fd);
    p->fd = -1;
  }
  CUSIM_INFO("checkpoint: %zu allocations, %zu mappings moved to host memory", s.phys.size(),
             s.mappings.size());
  return CUDA_SUCCESS;
}

CUresult restore_device_memory() {
  arena::State &s = arena::state();
  std::lock_guard lk(s.m);
  if (CUresult r = restore_context_state()) return r;
  for (auto &[h, p] : s.phys) {
    if (CUresult r = restore_one(p.get())) return r;
  }
  for (auto &[va, m] : s.mappings) {
    if (!arena::map_fd(m.phys, va, m.size, m.offset, m.prot)) return CUDA_ERROR_OUT_OF_MEMORY;
  }
  for (auto &[h, p] : s.phys) {
    munmap(p->saved, p->size);
    p->saved = nullptr;
    if (p->from_alloc) {  // as after cuMemAlloc: the mapping alone keeps the memory
      close(p->fd);
      p->fd = -1;
    }
  }
  CUSIM_INFO("restore: %zu allocations re-mapped", s.phys.size());
  return CUDA_SUCCESS;
}

}  // namespace phos::cudasim::checkpoint
