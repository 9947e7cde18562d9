// cudasim internals shared by every API-family file: the cuda.h view (every exported name and ABI
// version declared, with default visibility so definitions are exported), handle magics, the API
// gate and small helpers. Nothing here is exported except the cu* definitions that include it.
#pragma once

// The driver's own view of cuda.h: no base-name macros, every _v2/_ptsz/_ptds variant and the legacy
// ABIs declared, so each definition below is checked against NVIDIA's real prototype.
#define __CUDA_API_VERSION_INTERNAL 1
#define __CUDA_API_PUSH_VISIBILITY_DEFAULT 1
#include <cuda.h>

#include <cstddef>
#include <cstdint>

namespace phos::cudasim {

// First field of every handle object, so a handle of the wrong kind (a CUkernel passed as CUfunction)
// is told apart the way the real driver does.
enum class Magic : uint32_t {
  context = 0x43545831,  // CTX1
  stream = 0x53544d31,   // STM1
  event = 0x45564e31,    // EVN1
  module = 0x4d4f4431,   // MOD1
  function = 0x46554e31, // FUN1
  library = 0x4c494231,  // LIB1
  kernel = 0x4b524e31,   // KRN1
  dead = 0xdeadbeef,
};

inline bool has_magic(const void *h, Magic m) {
  return h != nullptr && *static_cast<const Magic *>(h) == m;
}

constexpr size_t kGranularity = size_t{2} << 20;  // cuMemGetAllocationGranularity on H200 (2 MiB)
constexpr size_t kPage = 4096;

inline size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

constexpr int kMaxGpus = 16;  // PHOS_SIM_GPUS upper bound

// ---- device.cpp: the process's devices ----
// Ordinals are the process's view (after CUDA_VISIBLE_DEVICES); each names a physical sim GPU
// (0 .. PHOS_SIM_GPUS-1) whose UUID and PCI bus id derive from the machine id and its index. A restore
// with GPU pairs re-points ordinals at other physical GPUs; everything else in the process (memory,
// contexts, VA sub-regions) is keyed by ordinal and stays as it was.
int device_count();                      // visible devices (0 before cuInit, or when none are visible)
int physical_gpu(CUdevice ordinal);      // pre: 0 <= ordinal < device_count()
CUuuid physical_uuid(int phys);
bool valid_device(CUdevice ordinal);
void init_devices();                     // at cuInit; once
// Restore with GPU pairs (old UUID -> new UUID): every visible device must be mapped, no old or new
// UUID twice, every new UUID a sim GPU of this machine; else CUDA_ERROR_INVALID_VALUE and nothing changes.
CUresult remap_devices(const CUuuid *olds, const CUuuid *news, unsigned count);

// ---- init.cpp ----
bool initialized();
CUresult require_init();     // NOT_INITIALIZED before cuInit
CUresult require_context();  // also INVALID_CONTEXT without a current context

// ---- gate.cpp: cuCheckpointProcessLock blocks new API calls here ----
// Every exported call that may touch device state opens an ApiScope first. Nested scopes on one
// thread (a host function calling the API) count once.
class ApiScope {
 public:
  ApiScope();
  ~ApiScope();
  ApiScope(const ApiScope &) = delete;
  ApiScope &operator=(const ApiScope &) = delete;

 private:
  bool counted_;
};

}  // namespace phos::cudasim

// Opens the API gate for the rest of the function.
#define CUSIM_API_ENTER() ::phos::cudasim::ApiScope cusim_api_scope_
