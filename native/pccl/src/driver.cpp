// Loads libcuda lazily (see driver.h). The agent runs on GPU-less machines too, so nothing here runs
// before the first call that needs the driver.
#include "driver.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

namespace phos::pccl {

#define PCCL_STR_(x) #x
#define PCCL_STR(x) PCCL_STR_(x)

namespace {

std::mutex g_mu;
std::atomic<Driver*> g_driver{nullptr};  // set once, never freed: the driver stays loaded for the process lifetime

Driver* load() {
  const char* env = std::getenv("PHOS_LIBCUDA");
  std::string path = env && *env ? env : "libcuda.so.1";
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* why = dlerror();
    throw Failure(PHOS_ERR_DRIVER_FAILED, "cannot load the CUDA driver " + path + ": " + (why ? why : "unknown") +
                                              " (set PHOS_LIBCUDA to libcuda.so.1 or cudasim's build)")
        .with("libcuda", path);
  }
  auto* d = new Driver();
  d->path = path;
#define PCCL_RESOLVE_REQUIRED(name)                                                                          \
  d->name = reinterpret_cast<decltype(d->name)>(dlsym(lib, PCCL_STR(name)));                                 \
  if (!d->name) {                                                                                            \
    delete d;                                                                                                \
    dlclose(lib);                                                                                            \
    throw Failure(PHOS_ERR_DRIVER_FAILED, path + " lacks " PCCL_STR(name) "; phos needs CUDA driver >= 570") \
        .with("libcuda", path);                                                                              \
  }
  PCCL_DRIVER_REQUIRED(PCCL_RESOLVE_REQUIRED)
#define PCCL_RESOLVE_OPTIONAL(name) d->name = reinterpret_cast<decltype(d->name)>(dlsym(lib, PCCL_STR(name)));
  PCCL_DRIVER_OPTIONAL(PCCL_RESOLVE_OPTIONAL)
  CUresult r = d->cuInit(0);
  if (r != CUDA_SUCCESS) {
    const char* name = nullptr;
    d->cuGetErrorName(r, &name);
    std::string n = name ? name : "CUresult " + std::to_string(static_cast<int>(r));
    delete d;
    // dlclose is skipped on purpose: a driver that ran cuInit may have started threads.
    throw Failure(PHOS_ERR_DRIVER_FAILED, "cuInit failed in " + path + ": " + n).with("cudaError", n).with("libcuda", path);
  }
  return d;
}

}  // namespace

const Driver& driver() {
  if (Driver* d = g_driver.load(std::memory_order_acquire)) return *d;
  std::lock_guard lock(g_mu);
  if (!g_driver.load()) g_driver.store(load(), std::memory_order_release);
  return *g_driver.load();
}

std::string cu_error_name(CUresult r) {
  const char* name = nullptr;
  Driver* d = g_driver.load(std::memory_order_acquire);
  if (d && d->cuGetErrorName(r, &name) == CUDA_SUCCESS && name) return name;
  return "CUresult " + std::to_string(static_cast<int>(r));
}

void cu_check(CUresult r, const char* call, const std::string& context) {
  if (r == CUDA_SUCCESS) return;
  std::string name = cu_error_name(r);
  const char* desc = nullptr;
  std::string why;
  Driver* d = g_driver.load(std::memory_order_acquire);
  if (d && d->cuGetErrorString(r, &desc) == CUDA_SUCCESS && desc) why = std::string(" (") + desc + ")";
  throw Failure(PHOS_ERR_DRIVER_FAILED, std::string(call) + " failed: " + name + why + context)
      .with("cudaError", name)
      .with("cuResult", static_cast<double>(r));
}

}  // namespace phos::pccl
