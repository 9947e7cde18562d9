// Keeper regions: import of app allocations by POSIX fd, spare allocations, device copies. All driver
// calls run on worker threads with the agent's context made current there first. The kept fd is what
// goes back to a restored app: re-exporting an *imported* handle fails on the real driver
// (CUDA_ERROR_INVALID_VALUE, keeper-probe), a dup of the fd it came with works.
#include "keeper.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "driver.h"
#include "js.h"

namespace phos::pccl {

namespace {

constexpr int kMaxDevices = 16;

std::mutex g_ctx_mu;
// Per device ordinal (the agent's view): its primary context, retained once and never released (the
// keeper lives as long as the agent). Memory of a device is made, imported and copied in its context.
CUcontext g_ctx[kMaxDevices] = {};

CUmemAllocationProp alloc_prop(int device) {
  CUmemAllocationProp p;
  std::memset(&p, 0, sizeof p);
  p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  p.location.id = device;
  p.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  return p;
}

// Makes device `device`'s keeper context current on this thread, creating it on first use.
const Driver& bind(int device = 0) {
  const Driver& d = driver();
  if (device < 0 || device >= kMaxDevices) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: device " + std::to_string(device) + " is out of range");
  CUcontext ctx;
  {
    std::lock_guard lock(g_ctx_mu);
    if (!g_ctx[device]) {
      std::string what = " (keeper, device " + std::to_string(device) + ")";
      CUdevice dev = 0;
      cu_check(d.cuDeviceGet(&dev, device), "cuDeviceGet", what);
      cu_check(d.cuDevicePrimaryCtxRetain(&g_ctx[device], dev), "cuDevicePrimaryCtxRetain", what);
    }
    ctx = g_ctx[device];
  }
  cu_check(d.cuCtxSetCurrent(ctx), "cuCtxSetCurrent", " (keeper)");
  return d;
}

// A device range mapped into the agent's VA: imported from an app (fd >= 0) or keeper-owned spare.
struct DeviceRegion final : Region {
  CUmemGenericAllocationHandle handle = 0;
  bool mapped = false;
  bool reserved = false;
  int fd = -1;  // the fd the allocation came with (imported regions)

  // Undo in reverse; runs on whichever thread drops the last reference (a worker, or JS at exit).
  ~DeviceRegion() override {
    if (mapped || reserved || handle) try {
      const Driver& d = bind(device);
      if (mapped) d.cuMemUnmap(dev, size);
      if (reserved) d.cuMemAddressFree(dev, size);
      if (handle) d.cuMemRelease(handle);
    } catch (const Failure&) {
      // The driver is gone or broken; nothing left to release through it.
    }
    if (fd >= 0) close(fd);
  }
};

size_t granularity(const Driver& d, int device) {
  CUmemAllocationProp p = alloc_prop(device);
  size_t g = 0;
  cu_check(d.cuMemGetAllocationGranularity(&g, &p, CU_MEM_ALLOC_GRANULARITY_MINIMUM), "cuMemGetAllocationGranularity");
  return g ? g : 1;
}

// Read-write for the region's device and every device that reaches it peer-to-peer: a copy between
// keeper regions of two devices (a same-node GPU move) then runs as one device-to-device copy.
std::vector<CUmemAccessDesc> access_for(const Driver& d, int device) {
  std::vector<CUmemAccessDesc> out;
  int n = 0;
  if (d.cuDeviceGetCount(&n) != CUDA_SUCCESS) n = 0;
  for (int i = 0; i < std::max(n, device + 1) && i < kMaxDevices; i++) {
    int can = i == device;
    if (!can && d.cuDeviceCanAccessPeer(&can, i, device) != CUDA_SUCCESS) can = 0;
    if (!can) continue;
    CUmemAccessDesc a;
    std::memset(&a, 0, sizeof a);
    a.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    a.location.id = i;
    a.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    out.push_back(a);
  }
  return out;
}

// Reserves a VA range in the agent, maps the handle there, grants access (access_for).
void map_region(const Driver& d, DeviceRegion& r, const std::string& what) {
  cu_check(d.cuMemAddressReserve(&r.dev, r.size, 0, 0, 0), "cuMemAddressReserve", what);
  r.reserved = true;
  cu_check(d.cuMemMap(r.dev, r.size, 0, r.handle, 0), "cuMemMap", what);
  r.mapped = true;
  std::vector<CUmemAccessDesc> a = access_for(d, r.device);
  cu_check(d.cuMemSetAccess(r.dev, r.size, a.data(), a.size()), "cuMemSetAccess", what);
}

std::shared_ptr<Region> import_fd(int fd, uint64_t size, int device) {
  auto r = std::make_shared<DeviceRegion>();
  r->fd = fd;  // owned from here: closed with the region, also on failure
  r->size = size;
  r->device = device;
  const Driver& d = bind(device);
  std::string what = " (keeper import of fd " + std::to_string(fd) + ", " + std::to_string(size) + " bytes, device " +
                     std::to_string(device) + ")";
  cu_check(d.cuMemImportFromShareableHandle(&r->handle, reinterpret_cast<void*>(static_cast<uintptr_t>(fd)),
                                            CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR),
           "cuMemImportFromShareableHandle", what);
  map_region(d, *r, what);
  return r;
}

std::shared_ptr<Region> create_spare(uint64_t size, int device) {
  const Driver& d = bind(device);
  size_t g = granularity(d, device);
  auto r = std::make_shared<DeviceRegion>();
  r->device = device;
  r->size = (size + g - 1) / g * g;
  std::string what = " (keeper spare of " + std::to_string(r->size) + " bytes on device " + std::to_string(device) + ")";
  CUmemAllocationProp p = alloc_prop(device);
  cu_check(d.cuMemCreate(&r->handle, r->size, &p, 0), "cuMemCreate", what);
  map_region(d, *r, what);
  return r;
}

std::shared_ptr<Region> device_region(uint32_t id) {
  auto r = regions_get(id, "keeper region");
  if (!r->is_device()) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: id " + std::to_string(id) + " is a host mapping, not a keeper region");
  return r;
}

struct Made {
  uint32_t id = 0;
  uint64_t size = 0;
  double ms = 0;
  int fd = -1;
  int device = 0;
};

// Optional device argument (default 0): an ordinal of the agent's driver view.
int arg_device(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || info[i].IsUndefined()) return 0;
  uint32_t d = arg_u32(info[i], "device");
  if (d >= kMaxDevices) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: device " + std::to_string(d) + " is out of range");
  return static_cast<int>(d);
}

Napi::Value made_to_js(Napi::Env env, Made& m) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("id", m.id);
  o.Set("size", static_cast<double>(m.size));
  o.Set("device", m.device);
  o.Set("ms", m.ms);
  return o;
}

Napi::Value ms_to_js(Napi::Env env, Made& m) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("ms", m.ms);
  return o;
}

std::mutex g_pool_mu;
std::vector<uint8_t*> g_pool;  // idle staging buffers
constexpr size_t kPoolKeep = 4;

}  // namespace

Staging::Staging() : data_(nullptr) {
  {
    std::lock_guard lock(g_pool_mu);
    if (!g_pool.empty()) {
      data_ = g_pool.back();
      g_pool.pop_back();
      return;
    }
  }
  const Driver& d = bind();
  void* p = nullptr;
  cu_check(d.cuMemHostAlloc(&p, kBytes, 0), "cuMemHostAlloc", " (keeper staging, 8 MiB)");
  std::memset(p, 0, kBytes);  // pre-fault once; every later use runs at copy speed
  data_ = static_cast<uint8_t*>(p);
}

Staging::~Staging() {
  std::lock_guard lock(g_pool_mu);
  if (g_pool.size() < kPoolKeep) {
    g_pool.push_back(data_);
    return;
  }
  try {
    bind().cuMemFreeHost(data_);
  } catch (const Failure&) {
  }
}

void device_read(const Region& r, uint64_t off, void* dst, size_t len) {
  const Driver& d = bind(r.device);
  cu_check(d.cuMemcpyDtoH(dst, r.dev + off, len), "cuMemcpyDtoH", " (keeper read)");
}

void device_write(const Region& r, uint64_t off, const void* src, size_t len) {
  const Driver& d = bind(r.device);
  cu_check(d.cuMemcpyHtoD(r.dev + off, src, len), "cuMemcpyHtoD", " (keeper write)");
}

Napi::Value keeperImport(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    int fd = arg_fd(info[0], "fd");
    uint64_t size = arg_u64(info[1], "size");
    int device = arg_device(info, 2);
    if (size == 0) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: keeperImport of 0 bytes");
    // dup now, on the JS thread: the caller may close its fd as soon as this returns.
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (own < 0) throw errno_failure(PHOS_ERR_BAD_ARGS, errno, "pccl: keeperImport cannot dup fd " + std::to_string(fd));
    return run_async<Made>(
        info.Env(), "pccl.keeperImport",
        [own, size, device] {
          auto t0 = std::chrono::steady_clock::now();
          auto r = import_fd(own, size, device);
          return Made{regions_add(r), r->size, ms_since(t0), -1, device};
        },
        made_to_js);
  });
}

Napi::Value keeperRelease(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    uint32_t id = arg_u32(info[0], "id");
    device_region(id);
    auto r = regions_take(id, "keeper region");
    return run_async<Made>(
        info.Env(), "pccl.keeperRelease",
        [r]() mutable {
          auto t0 = std::chrono::steady_clock::now();
          r.reset();  // unmapped and released here unless a chunk job still holds it
          return Made{0, 0, ms_since(t0)};
        },
        ms_to_js);
  });
}

Napi::Value keeperExportFd(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    uint32_t id = arg_u32(info[0], "id");
    auto r = std::static_pointer_cast<DeviceRegion>(device_region(id));
    return run_async<Made>(
        info.Env(), "pccl.keeperExportFd",
        [r, id] {
          Made m;
          if (r->fd >= 0) {
            m.fd = fcntl(r->fd, F_DUPFD_CLOEXEC, 3);
            if (m.fd < 0) throw errno_failure(PHOS_ERR_INTERNAL, errno, "pccl: dup of keeper region " + std::to_string(id));
            return m;
          }
          const Driver& d = bind(r->device);
          int fd = -1;
          cu_check(d.cuMemExportToShareableHandle(&fd, r->handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0),
                   "cuMemExportToShareableHandle", " (keeper region " + std::to_string(id) + ")");
          m.fd = fd;
          return m;
        },
        [](Napi::Env env, Made& m) -> Napi::Value { return Napi::Number::New(env, m.fd); });
  });
}

Napi::Value keeperSpare(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    uint64_t size = arg_u64(info[0], "size");
    int device = arg_device(info, 1);
    if (size == 0) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: keeperSpare of 0 bytes");
    return run_async<Made>(
        info.Env(), "pccl.keeperSpare",
        [size, device] {
          auto t0 = std::chrono::steady_clock::now();
          auto r = create_spare(size, device);
          return Made{regions_add(r), r->size, ms_since(t0), -1, device};
        },
        made_to_js);
  });
}

Napi::Value keeperCopy(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    uint32_t dst_id = arg_u32(info[0], "dstId");
    uint64_t dst_off = arg_u64(info[1], "dstOff");
    uint32_t src_id = arg_u32(info[2], "srcId");
    uint64_t src_off = arg_u64(info[3], "srcOff");
    uint64_t len = arg_u64(info[4], "length");
    auto dst = device_region(dst_id);
    auto src = device_region(src_id);
    regions_check_range(*dst, dst_id, dst_off, len);
    regions_check_range(*src, src_id, src_off, len);
    return run_async<Made>(
        info.Env(), "pccl.keeperCopy",
        [dst, src, dst_off, src_off, len] {
          auto t0 = std::chrono::steady_clock::now();
          // In the source's context: both mappings are accessible to it when the devices are peers (access_for).
          const Driver& d = bind(src->device);
          std::string what = " (keeper copy, device " + std::to_string(src->device) + " -> " + std::to_string(dst->device) + ")";
          cu_check(d.cuMemcpyDtoD(dst->dev + dst_off, src->dev + src_off, len), "cuMemcpyDtoD", what);
          return Made{0, 0, ms_since(t0)};
        },
        ms_to_js);
  });
}

}  // namespace phos::pccl
