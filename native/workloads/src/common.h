// Host-side scaffolding shared by the four workloads: options, the stdout protocol (README.md), CUDA
// error checks, context and module setup, kernel launches and the pure-CPU digest. Workload logic and
// the models stay in each workload's own file.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/mix.h"

namespace phos::workloads {

// Exit statuses (README.md): a harness tells corruption from a driver failure by them.
inline constexpr int kExitOk = 0;
inline constexpr int kExitCorrupt = 1;  // a step or the final check found data differing from the model
inline constexpr int kExitUsage = 2;    // bad command line
inline constexpr int kExitCuda = 3;     // a driver call failed

// Threads per block for every launch; kernels/common.cuh needs a multiple of 32.
inline constexpr uint32_t kBlock = 256;

// One numeric command-line option (`--name N`, `--name=N`, decimal or 0x hex).
struct Option {
  std::string name;
  uint64_t value;
  std::string help;
};

// The command line: the workload's own options plus the common ones (steps, step-ms, seed, device,
// reference). parse() exits with kExitUsage on an unknown or malformed option and 0 after --help.
class Cli {
 public:
  Cli(const char *workload, uint64_t default_steps, std::vector<Option> own);
  void parse(int argc, char **argv);
  uint64_t get(const std::string &name) const;
  bool reference() const { return reference_; }
  const char *workload() const { return workload_; }
  // Prints the `config workload=NAME key=value ...` line.
  void print_config() const;

 private:
  const char *workload_;
  std::vector<Option> opts_;
  bool reference_ = false;
};

// Writes one line to stdout and flushes (harnesses read the stream live).
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// `<workload>: error: ...` on stderr, then exit(status).
[[noreturn]] void fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Wall-clock milliseconds (CLOCK_REALTIME, so a restored or migrated process keeps a comparable clock).
double now_ms();
void sleep_ms(uint64_t ms);

void check(CUresult r, const char *call, const char *file, int line);
#define WL_CK(call) ::phos::workloads::check((call), #call, __FILE__, __LINE__)

// cuInit, device `ordinal`, its primary context made current; prints `device driver=V name=NAME`.
// The destructor releases the primary context.
class Device {
 public:
  explicit Device(int ordinal);
  ~Device();
  Device(const Device &) = delete;
  Device &operator=(const Device &) = delete;
  CUdevice dev() const { return dev_; }

 private:
  CUdevice dev_ = 0;
};

// A PTX module loaded with cuModuleLoadData; unloaded by the destructor.
class Module {
 public:
  explicit Module(const char *ptx);
  ~Module();
  Module(const Module &) = delete;
  Module &operator=(const Module &) = delete;
  CUfunction fn(const char *entry) const;

 private:
  CUmodule mod_ = nullptr;
};

// Blocks for n grid-stride items: enough to fill a GPU, few enough for cudasim's per-block cost.
uint32_t grid_for(uint64_t n);

// Launches f with a (gx, gy, 1) grid of kBlock threads; every argument is an 8-byte value, as the
// kernels declare them (kernelParams convention).
template <class... A> void launch(CUfunction f, uint32_t gx, uint32_t gy, CUstream s, A... a) {
  static_assert(((sizeof(A) == 8) && ...), "kernel parameters are 8-byte values");
  void *params[] = {static_cast<void *>(&a)..., nullptr};
  WL_CK(cuLaunchKernel(f, gx, gy, 1, kBlock, 1, 1, 0, s, params, nullptr));
}

// Digest of n words at device address p (positions base + i) by the module's wl_digest kernel, through
// 8 bytes of device scratch; stream-ordered on s, returns after s is synchronised.
uint64_t device_digest(CUfunction digest, CUdeviceptr p, uint64_t n, uint64_t base, CUdeviceptr scratch,
                       CUstream s);
// The same digest on the CPU.
uint64_t cpu_digest(const uint64_t *p, uint64_t n, uint64_t base);

// Drives steps 1..steps (forever when steps == 0): runs body(step) -> ok, prints the `step` line, exits
// with kExitCorrupt after a BAD step, sleeps step_ms between steps. Returns the number of steps run.
template <class F> uint64_t run_steps(const Cli &cli, F &&body) {
  const uint64_t steps = cli.get("steps"), pause = cli.get("step-ms");
  uint64_t k = 1;
  for (; steps == 0 || k <= steps; ++k) {
    const bool ok = body(k);
    say("step %llu t %.3f %s", static_cast<unsigned long long>(k), now_ms(), ok ? "ok" : "BAD");
    if (!ok) fail(kExitCorrupt, "step %llu: data differs from the CPU model", static_cast<unsigned long long>(k));
    if (pause != 0) sleep_ms(pause);
  }
  return k - 1;
}

void print_checksum(uint64_t checksum);

}  // namespace phos::workloads
