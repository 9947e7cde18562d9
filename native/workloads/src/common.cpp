// Host-side scaffolding shared by the workloads: options, stdout protocol, driver setup and checks.
#include "common.h"

#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace phos::workloads {
namespace {
const char *g_workload = "workload";
}

Cli::Cli(const char *workload, uint64_t default_steps, std::vector<Option> own) : workload_(workload) {
  g_workload = workload;
  opts_ = std::move(own);
  opts_.push_back({"steps", default_steps, "steps to run; 0 runs until killed (no checksum)"});
  opts_.push_back({"step-ms", 10, "sleep between steps, ms"});
  opts_.push_back({"seed", 1, "seed of every pattern"});
  opts_.push_back({"device", 0, "device ordinal"});
  // Harnesses parse stdout, so it is line-buffered even when it is a pipe.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
}

void Cli::parse(int argc, char **argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("usage: %s [--reference] [--NAME N]...\n  --reference  print the CPU model's checksum "
                  "and exit (no driver calls)\n", workload_);
      for (const auto &o : opts_)
        std::printf("  --%-12s %s (default %" PRIu64 ")\n", o.name.c_str(), o.help.c_str(), o.value);
      std::exit(kExitOk);
    }
    if (arg == "--reference") {
      reference_ = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) fail(kExitUsage, "unexpected argument '%s' (try --help)", arg.c_str());
    std::string name = arg.substr(2), value;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      fail(kExitUsage, "option --%s needs a value", name.c_str());
    }
    Option *opt = nullptr;
    for (auto &o : opts_)
      if (o.name == name) opt = &o;
    if (opt == nullptr) fail(kExitUsage, "unknown option --%s (try --help)", name.c_str());
    char *end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(value.c_str(), &end, 0);
    if (value.empty() || *end != '\0' || errno != 0 || value[0] == '-')
      fail(kExitUsage, "option --%s: '%s' is not a non-negative integer", name.c_str(), value.c_str());
    opt->value = v;
  }
}

uint64_t Cli::get(const std::string &name) const {
  for (const auto &o : opts_)
    if (o.name == name) return o.value;
  fail(kExitUsage, "internal: no option '%s'", name.c_str());
}

void Cli::print_config() const {
  std::string line = "config workload=";
  line += workload_;
  for (const auto &o : opts_) line += " " + o.name + "=" + std::to_string(o.value);
  say("%s", line.c_str());
}

void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stdout, fmt, ap);
  va_end(ap);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

void fail(int status, const char *fmt, ...) {
  std::fflush(stdout);
  std::fprintf(stderr, "%s: error: ", g_workload);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
  std::exit(status);
}

double now_ms() {
  timespec t{};
  clock_gettime(CLOCK_REALTIME, &t);
  return double(t.tv_sec) * 1e3 + double(t.tv_nsec) / 1e6;
}

void sleep_ms(uint64_t ms) {
  timespec t{static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) != 0 && errno == EINTR) {
  }
}

void check(CUresult r, const char *call, const char *file, int line) {
  if (r == CUDA_SUCCESS) return;
  const char *name = nullptr, *text = nullptr;
  if (cuGetErrorName(r, &name) != CUDA_SUCCESS) name = "unknown";
  if (cuGetErrorString(r, &text) != CUDA_SUCCESS) text = "";
  fail(kExitCuda, "%s failed: %s (%d) %s at %s:%d", call, name, int(r), text, file, line);
}

Device::Device(int ordinal) {
  WL_CK(cuInit(0));
  int driver = 0;
  WL_CK(cuDriverGetVersion(&driver));
  WL_CK(cuDeviceGet(&dev_, ordinal));
  char name[256] = {};
  WL_CK(cuDeviceGetName(name, sizeof name, dev_));
  CUcontext ctx = nullptr;
  WL_CK(cuDevicePrimaryCtxRetain(&ctx, dev_));
  WL_CK(cuCtxSetCurrent(ctx));
  say("device driver=%d name=%s", driver, name);
}

Device::~Device() { cuDevicePrimaryCtxRelease(dev_); }

Module::Module(const char *ptx) { WL_CK(cuModuleLoadData(&mod_, ptx)); }

Module::~Module() { cuModuleUnload(mod_); }

CUfunction Module::fn(const char *entry) const {
  CUfunction f = nullptr;
  WL_CK(cuModuleGetFunction(&f, mod_, entry));
  return f;
}

uint32_t grid_for(uint64_t n) {
  const uint64_t blocks = (n + kBlock - 1) / kBlock;
  return static_cast<uint32_t>(blocks == 0 ? 1 : blocks > 1024 ? 1024 : blocks);
}

uint64_t device_digest(CUfunction digest, CUdeviceptr p, uint64_t n, uint64_t base, CUdeviceptr scratch,
                       CUstream s) {
  uint64_t out = 0;
  WL_CK(cuMemsetD32Async(scratch, 0, 2, s));
  launch(digest, grid_for(n), 1, s, p, n, base, scratch);
  WL_CK(cuMemcpyDtoHAsync(&out, scratch, sizeof out, s));
  WL_CK(cuStreamSynchronize(s));
  return out;
}

uint64_t cpu_digest(const uint64_t *p, uint64_t n, uint64_t base) {
  uint64_t s = 0;
  for (uint64_t i = 0; i < n; ++i) s += wl_digest_term(p[i], base + i);
  return s;
}

void print_checksum(uint64_t checksum) { say("checksum %016" PRIx64, checksum); }

}  // namespace phos::workloads
