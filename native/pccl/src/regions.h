// The table of memory pccl can read and write by id: host mappings (shm.cpp) and keeper device ranges
// (keeper.cpp) share one id space, so chunk-io's src/dst is a plain number. Entries are shared_ptr: a
// job in flight keeps its region alive after JS released the id; the memory goes with the last user.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <memory>

namespace phos::pccl {

struct Region {
  virtual ~Region() = default;
  uint64_t size = 0;
  bool writable = true;
  uint8_t* host = nullptr;  // host mappings: the mapped bytes
  CUdeviceptr dev = 0;      // keeper regions: the device VA in the agent's context
  int device = 0;           // keeper regions: the device ordinal (agent's view) whose memory it is
  bool is_device() const { return host == nullptr; }
};

// Registers r; returns its id (never 0, never reused while the process lives).
uint32_t regions_add(std::shared_ptr<Region> r);
// The region with this id; throws Failure(NOT_FOUND) naming `what` and the id.
std::shared_ptr<Region> regions_get(uint32_t id, const char* what);
// Removes the id and returns its region (the caller may drop it); throws like regions_get.
std::shared_ptr<Region> regions_take(uint32_t id, const char* what);
// Throws Failure(BAD_ARGS) unless [off, off+len) lies inside r.
void regions_check_range(const Region& r, uint32_t id, uint64_t off, uint64_t len);

}  // namespace phos::pccl
