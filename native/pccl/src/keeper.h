// The keeper: the agent's own CUDA context (primary context of device 0, created on first use) holding
// a second reference to each app allocation (imported POSIX fd, mapped into the agent's VA), plus
// keeper-owned spare memory. chunk-io reaches device bytes through device_read/device_write.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

#include "regions.h"

namespace phos::pccl {

// keeperImport(fd, size) -> Promise<{id, size, ms}>; the keeper dups fd, the caller still owns its fd.
Napi::Value keeperImport(const Napi::CallbackInfo& info);
// keeperRelease(id) -> Promise<{ms}>; the id is gone at once, the memory once no job still uses it.
Napi::Value keeperRelease(const Napi::CallbackInfo& info);
// keeperExportFd(id) -> Promise<number>: a new fd for the memory (the caller owns and closes it).
Napi::Value keeperExportFd(const Napi::CallbackInfo& info);
// keeperSpare(size) -> Promise<{id, size, ms}>; size rounded up to the allocation granularity.
Napi::Value keeperSpare(const Napi::CallbackInfo& info);
// keeperCopy(dstId, dstOff, srcId, srcOff, length) -> Promise<{ms}> (device to device).
Napi::Value keeperCopy(const Napi::CallbackInfo& info);

// A pinned, pre-faulted host buffer from a small pool, returned to it on destruction. Touching fresh
// host memory runs at ~2.5 GB/s on the H200 VM (DESIGN.md), so buffers are reused, never per call.
class Staging {
 public:
  static constexpr size_t kBytes = size_t{8} << 20;
  Staging();
  ~Staging();
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;
  uint8_t* data() const { return data_; }
  size_t size() const { return kBytes; }

 private:
  uint8_t* data_;
};

// Synchronous copies between a keeper region and host memory, on the calling (worker) thread.
// pre: r.is_device() and the range was checked with regions_check_range.
void device_read(const Region& r, uint64_t off, void* dst, size_t len);
void device_write(const Region& r, uint64_t off, const void* src, size_t len);

}  // namespace phos::pccl
