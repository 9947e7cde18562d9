// Device queries: PHOS_SIM_GPUS simulated Hopper-class devices, "phos-sim", each with a UUID and
// a PCI bus id stable per machine and index, filtered and ordered by CUDA_VISIBLE_DEVICES as the
// driver does; and the device table a restore with GPU pairs re-points (see internal.h).
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <strings.h>
#include <fstream>
#include <string>
#include <vector>

#include "internal.h"
#include "log.h"
#include "options.h"

using namespace phos::cudasim;

namespace {

constexpr char kName[] = "phos-sim";

// Ordinal -> physical sim GPU. Atomics: queries read it without the gate while a restore rewrites it
// (the process is CHECKPOINTED then, so no call of its own is in flight that could see a mix).
std::atomic<int> g_count{0};
std::atomic<int> g_physical[kMaxGpus];

// FNV-1a over the machine id: stable per machine and per device index, never random.
CUuuid make_uuid(int phys) {
  std::string seed;
  std::ifstream in("/etc/machine-id");
  if (!(in >> seed)) {
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    seed = host;
  }
  seed += "/phos-sim/" + std::to_string(phys);
  CUuuid u;
  uint64_t h1 = 1469598103934665603ull, h2 = 1099511628211ull * 7;
  for (unsigned char c : seed) {
    h1 = (h1 ^ c) * 1099511628211ull;
    h2 = (h2 ^ c) * 14029467366897019727ull;
  }
  memcpy(u.bytes, &h1, 8);
  memcpy(u.bytes + 8, &h2, 8);
  return u;
}

// Bus 0x53 for GPU 0 (what a single-GPU sim always reported), then 0x5e, 0x69, ... (< 0x100).
int bus_of(int phys) { return 0x53 + 11 * phys; }

// "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi and CUDA_VISIBLE_DEVICES write it.
std::string uuid_string(const CUuuid &u) {
  const auto *b = reinterpret_cast<const unsigned char *>(u.bytes);
  char buf[64];
  snprintf(buf, sizeof buf,
           "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
           b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return buf;
}

// One CUDA_VISIBLE_DEVICES entry: an index, or a (unique prefix of a) GPU UUID. -1 if invalid.
int parse_visible_entry(std::string e) {
  while (!e.empty() && isspace(static_cast<unsigned char>(e.back()))) e.pop_back();
  size_t lead = 0;
  while (lead < e.size() && isspace(static_cast<unsigned char>(e[lead]))) lead++;
  e.erase(0, lead);
  if (e.empty()) return -1;
  const int n = options().gpus;
  if (isdigit(static_cast<unsigned char>(e[0]))) {
    char *end = nullptr;
    long v = strtol(e.c_str(), &end, 10);
    return *end == 0 && v >= 0 && v < n ? static_cast<int>(v) : -1;
  }
  if (strncasecmp(e.c_str(), "GPU-", 4) != 0 || e.size() < 5) return -1;
  int found = -1;
  for (int i = 0; i < n; i++) {
    if (strncasecmp(uuid_string(make_uuid(i)).c_str(), e.c_str(), e.size()) != 0) continue;
    if (found >= 0) return -1;  // ambiguous prefix
    found = i;
  }
  return found;
}

CUresult check(CUdevice dev) {
  if (CUresult r = require_init()) return r;
  return valid_device(dev) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

int attribute(CUdevice_attribute a, CUdevice dev) {
  switch (a) {
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: return 64;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: return 2147483647;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: return 65535;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: return 65535;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: return 49152;
    case CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY: return 65536;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE: return 32;
    case CU_DEVICE_ATTRIBUTE_MAX_PITCH: return 2147483647;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: return 65536;
    case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: return 1980000;
    case CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT: return 512;
    case CU_DEVICE_ATTRIBUTE_GPU_OVERLAP: return 1;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: return 132;
    case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY: return 1;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_MODE: return CU_COMPUTEMODE_DEFAULT;
    case CU_DEVICE_ATTRIBUTE_SURFACE_ALIGNMENT: return 512;
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS: return 1;
    case CU_DEVICE_ATTRIBUTE_ECC_ENABLED: return 1;
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID: return bus_of(physical_gpu(dev));
    case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: return 2619000;
    case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: return 6144;
    case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: return 52428800;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR: return 2048;
    case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT: return 3;
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: return 1;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: return 9;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: return 0;
    case CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_GLOBAL_L1_CACHE_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_LOCAL_L1_CACHE_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: return 233472;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR: return 65536;
    case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY: return 0;  // managed memory is not simulated
    case CU_DEVICE_ATTRIBUTE_SINGLE_TO_DOUBLE_PRECISION_PERF_RATIO: return 2;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_PREEMPTION_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM: return 1;
    case CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH: return 1;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: return 232448;
    case CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR: return 32;
    case CU_DEVICE_ATTRIBUTE_MAX_PERSISTING_L2_CACHE_SIZE: return 32505856;
    case CU_DEVICE_ATTRIBUTE_MAX_ACCESS_POLICY_WINDOW_SIZE: return 134213632;
    case CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK: return 1024;
    case CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: return 0;  // cuMemAllocAsync is not simulated
    case CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH: return 1;
    case CU_DEVICE_ATTRIBUTE_DEFERRED_MAPPING_CUDA_ARRAY_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_MEM_SYNC_DOMAIN_COUNT: return 4;
    case CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID: return -1;
    default: return 0;
  }
}

}  // namespace

namespace phos::cudasim {

int device_count() { return g_count.load(std::memory_order_acquire); }

bool valid_device(CUdevice ordinal) { return ordinal >= 0 && ordinal < device_count(); }

int physical_gpu(CUdevice ordinal) { return g_physical[ordinal].load(std::memory_order_acquire); }

CUuuid physical_uuid(int phys) { return make_uuid(phys); }

// The driver's rules: unset = every GPU in index order; otherwise the listed ones in list order, up
// to the first invalid (or repeated) entry; an empty value hides every GPU (cuInit: NO_DEVICE).
void init_devices() {
  const char *env = getenv("CUDA_VISIBLE_DEVICES");
  int n = 0;
  if (!env) {
    for (; n < options().gpus; n++) g_physical[n].store(n);
  } else {
    std::string list = env;
    size_t pos = 0;
    while (pos <= list.size() && n < kMaxGpus) {
      size_t comma = list.find(',', pos);
      if (comma == std::string::npos) comma = list.size();
      int phys = parse_visible_entry(list.substr(pos, comma - pos));
      bool dup = false;
      for (int i = 0; i < n; i++) dup |= g_physical[i].load() == phys;
      if (phys < 0 || dup) break;
      g_physical[n++].store(phys);
      pos = comma + 1;
    }
    CUSIM_INFO("CUDA_VISIBLE_DEVICES=%s: %d of %d sim GPUs visible", env, n, options().gpus);
  }
  g_count.store(n, std::memory_order_release);
}

CUresult remap_devices(const CUuuid *olds, const CUuuid *news, unsigned count) {
  const int n = device_count(), gpus = options().gpus;
  int target[kMaxGpus];
  for (int i = 0; i < n; i++) target[i] = -1;
  bool new_used[kMaxGpus] = {};
  for (unsigned k = 0; k < count; k++) {
    int ordinal = -1, to = -1;
    for (int i = 0; i < n; i++) {
      CUuuid u = make_uuid(physical_gpu(i));
      if (memcmp(&olds[k], &u, sizeof u) == 0) ordinal = i;
    }
    for (int p = 0; p < gpus; p++) {
      CUuuid u = make_uuid(p);
      if (memcmp(&news[k], &u, sizeof u) == 0) to = p;
    }
    if (ordinal < 0 || to < 0 || target[ordinal] >= 0 || new_used[to]) {
      CUSIM_WARN("restore: GPU pair %u (%s -> %s) names no visible device of this process, an unknown "
                 "GPU, or a GPU twice", k, uuid_string(olds[k]).c_str(), uuid_string(news[k]).c_str());
      return CUDA_ERROR_INVALID_VALUE;
    }
    target[ordinal] = to;
    new_used[to] = true;
  }
  for (int i = 0; i < n; i++) {
    if (target[i] < 0) {
      CUSIM_WARN("restore: GPU pairs leave device %d (%s) unmapped; every visible GPU must be mapped",
                 i, uuid_string(make_uuid(physical_gpu(i))).c_str());
      return CUDA_ERROR_INVALID_VALUE;
    }
  }
  for (int i = 0; i < n; i++) {
    if (target[i] != physical_gpu(i))
      CUSIM_INFO("restore: device %d moves from sim GPU %d to sim GPU %d", i, physical_gpu(i), target[i]);
    g_physical[i].store(target[i], std::memory_order_release);
  }
  return CUDA_SUCCESS;
}

}  // namespace phos::cudasim

CUresult cuDeviceGet(CUdevice *device, int ordinal) {
  if (CUresult r = require_init()) return r;
  if (!device) return CUDA_ERROR_INVALID_VALUE;
  if (!valid_device(ordinal)) return CUDA_ERROR_INVALID_DEVICE;
  *device = ordinal;
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetCount(int *count) {
  if (CUresult r = require_init()) return r;
  if (!count) return CUDA_ERROR_INVALID_VALUE;
  *count = device_count();
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice dev) {
  if (CUresult r = check(dev)) return r;
  if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
  snprintf(name, static_cast<size_t>(len), "%s", kName);
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev) {
  if (CUresult r = check(dev)) return r;
  if (!uuid) return CUDA_ERROR_INVALID_VALUE;
  *uuid = make_uuid(physical_gpu(dev));
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev) { return cuDeviceGetUuid_v2(uuid, dev); }

CUresult cuDeviceGetLuid(char *, unsigned int *, CUdevice dev) {
  if (CUresult r = check(dev)) return r;
  return CUDA_ERROR_NOT_SUPPORTED;  // Windows only
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev) {
  if (CUresult r = check(dev)) return r;
  if (!bytes) return CUDA_ERROR_INVALID_VALUE;
  *bytes = options().mem_bytes;
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev) {
  if (CUresult r = check(dev)) return r;
  if (!pi || attrib < 1 || attrib >= CU_DEVICE_ATTRIBUTE_MAX) return CUDA_ERROR_INVALID_VALUE;
  *pi = attribute(attrib, dev);
  return CUDA_SUCCESS;
}

CUresult cuDeviceComputeCapability(int *major, int *minor, CUdevice dev) {
  if (CUresult r = check(dev)) return r;
  if (!major || !minor) return CUDA_ERROR_INVALID_VALUE;
  *major = 9;
  *minor = 0;
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetPCIBusId(char *pciBusId, int len, CUdevice dev) {
  if (CUresult r = check(dev)) return r;
  if (!pciBusId || len <= 0) return CUDA_ERROR_INVALID_VALUE;
  snprintf(pciBusId, static_cast<size_t>(len), "0000:%02x:00.0", bus_of(physical_gpu(dev)));
  return CUDA_SUCCESS;
}

// Accepts domain:bus:device.function with any domain width ("0000:53:00.0", "00000000:53:00.0") and
// bus:device.function.
CUresult cuDeviceGetByPCIBusId(CUdevice *dev, const char *pciBusId) {
  if (CUresult r = require_init()) return r;
  if (!dev || !pciBusId) return CUDA_ERROR_INVALID_VALUE;
  unsigned domain = 0, bus = 0, device = 0, function = 0;
  int used = 0;
  if (sscanf(pciBusId, "%x:%x:%x.%x%n", &domain, &bus, &device, &function, &used) != 4 ||
      pciBusId[used] != 0) {
    domain = 0;
    used = 0;
    if (sscanf(pciBusId, "%x:%x.%x%n", &bus, &device, &function, &used) != 3 || pciBusId[used] != 0)
      return CUDA_ERROR_INVALID_VALUE;
  }
  if (domain != 0 || device != 0 || function != 0) return CUDA_ERROR_INVALID_DEVICE;
  for (int i = 0; i < device_count(); i++) {
    if (static_cast<unsigned>(bus_of(physical_gpu(i))) == bus) {
      *dev = i;
      return CUDA_SUCCESS;
    }
  }
  return CUDA_ERROR_INVALID_DEVICE;
}

CUresult cuDeviceCanAccessPeer(int *canAccessPeer, CUdevice dev, CUdevice peerDev) {
  if (CUresult r = check(dev)) return r;
  if (CUresult r = check(peerDev)) return r;
  if (!canAccessPeer) return CUDA_ERROR_INVALID_VALUE;
  *canAccessPeer = dev != peerDev;  // every pair of sim GPUs is "NVLinked"; a device is not its own peer
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetP2PAttribute(int *value, CUdevice_P2PAttribute attrib, CUdevice srcDevice,
                                 CUdevice dstDevice) {
  if (CUresult r = check(srcDevice)) return r;
  if (CUresult r = check(dstDevice)) return r;
  if (!value || srcDevice == dstDevice) return CUDA_ERROR_INVALID_DEVICE;
  switch (attrib) {
    case CU_DEVICE_P2P_ATTRIBUTE_PERFORMANCE_RANK: *value = 0; break;
    case CU_DEVICE_P2P_ATTRIBUTE_ACCESS_SUPPORTED: *value = 1; break;
    case CU_DEVICE_P2P_ATTRIBUTE_NATIVE_ATOMIC_SUPPORTED: *value = 1; break;
    case CU_DEVICE_P2P_ATTRIBUTE_CUDA_ARRAY_ACCESS_SUPPORTED: *value = 0; break;  // no arrays
    default: return CUDA_ERROR_INVALID_VALUE;
  }
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetProperties(CUdevprop *prop, CUdevice dev) {
  if (CUresult r = check(dev)) return r;
  if (!prop) return CUDA_ERROR_INVALID_VALUE;
  *prop = CUdevprop{};
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
  prop->sharedMemPerBlock = 49152;
  prop->totalConstantMemory = 65536;
  prop->SIMDWidth = 32;
  prop->memPitch = 2147483647;
  prop->regsPerBlock = 65536;
  prop->clockRate = 1980000;
  prop->textureAlign = 512;
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetExecAffinitySupport(int *pi, CUexecAffinityType, CUdevice dev) {
  if (CUresult r = check(dev)) return r;
  if (!pi) return CUDA_ERROR_INVALID_VALUE;
  *pi = 0;
  return CUDA_SUCCESS;
}
