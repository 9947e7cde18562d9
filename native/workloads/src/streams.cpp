// streams: several prioritised streams per step, each copying its input in from pinned host memory
// (cuMemHostAlloc), transforming it and handing it to its neighbour through an event and a
// device-to-device copy; one stream gathers every result, folds it into persistent state and copies it
// out to registered host memory (cuMemHostRegister). Every step is checked against a pure-CPU model.
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common.h"
#include "streams-ptx.h"

namespace phos::workloads {
namespace {

// The initial state comes from cuMemsetD8 with this byte.
constexpr unsigned char kStateByte = 0xA5;

struct Shape {
  uint64_t streams, words, seed;
  explicit Shape(const Cli &cli) : streams(cli.get("streams")), words(cli.get("kib") << 7), seed(wl_mix64(cli.get("seed"))) {
    if (streams < 2 || streams > 64 || words == 0) fail(kExitUsage, "need 2 <= --streams <= 64 and --kib >= 1");
  }
  uint64_t input_seed(uint64_t k, uint64_t s) const { return wl_mix64(seed ^ wl_mix64(k * 64 + s)); }
  uint64_t key(uint64_t k, uint64_t s) const { return wl_mix64(seed + (k << 8) + s); }
  void fill_input(uint64_t *p, uint64_t k, uint64_t s) const {
    const uint64_t is = input_seed(k, s);
    for (uint64_t i = 0; i < words; ++i) p[i] = wl_pattern(is, i);
  }
};

// What the GPU computes, step by step, on the CPU.
class Model {
 public:
  explicit Model(const Shape &sh) : sh_(sh), state_(sh.words), in_(sh.words), out_(sh.streams, std::vector<uint64_t>(sh.words)) {
    uint64_t v;
    std::memset(&v, kStateByte, sizeof v);
    for (auto &x : state_) x = v;
  }
  void step(uint64_t k) {
    for (uint64_t s = 0; s < sh_.streams; ++s) {
      sh_.fill_input(in_.data(), k, s);
      const uint64_t key = sh_.key(k, s);
      for (uint64_t i = 0; i < sh_.words; ++i) out_[s][i] = wl_mix64(in_[i] ^ key) + i;
    }
    for (uint64_t i = 0; i < sh_.words; ++i) {
      uint64_t acc = 0;
      for (uint64_t s = 0; s < sh_.streams; ++s) acc += wl_mix64(out_[(s + 1) % sh_.streams][i] + s);
      state_[i] = state_[i] * WL_LCG_MUL + acc;
    }
  }
  const std::vector<uint64_t> &state() const { return state_; }

 private:
  const Shape &sh_;
  std::vector<uint64_t> state_, in_;
  std::vector<std::vector<uint64_t>> out_;
};

int reference(const Cli &cli, const Shape &sh) {
  const uint64_t steps = cli.get("steps");
  if (steps == 0) fail(kExitUsage, "--reference needs --steps > 0");
  Model m(sh);
  for (uint64_t k = 1; k <= steps; ++k) m.step(k);
  print_checksum(cpu_digest(m.state().data(), sh.words, 0));
  return kExitOk;
}

struct Lane {  // one stream and what it owns
  CUstream stream = nullptr;
  int priority = 0;
  uint64_t *host_in = nullptr;  // pinned, cuMemHostAlloc
  CUdeviceptr in = 0, out = 0, copy = 0;
  CUevent done = nullptr, copied = nullptr;
};

int run(const Cli &cli, const Shape &sh) {
  Device device(static_cast<int>(cli.get("device")));
  Module mod(kPtx);
  const CUfunction transform = mod.fn("wl_streams_transform"), accumulate = mod.fn("wl_streams_accumulate"),
                   fold = mod.fn("wl_streams_fold");
  const uint64_t bytes = sh.words * 8;
  int least = 0, greatest = 0;
  WL_CK(cuCtxGetStreamPriorityRange(&least, &greatest));

  std::vector<Lane> lanes(sh.streams);
  for (uint64_t s = 0; s < sh.streams; ++s) {
    Lane &l = lanes[s];
    const int want = s % 2 == 0 ? greatest : least;
    WL_CK(cuStreamCreateWithPriority(&l.stream, CU_STREAM_NON_BLOCKING, want));
    WL_CK(cuStreamGetPriority(l.stream, &l.priority));
    if (l.priority != want) fail(kExitCuda, "stream %llu has priority %d, asked for %d", static_cast<unsigned long long>(s), l.priority, want);
    WL_CK(cuMemHostAlloc(reinterpret_cast<void **>(&l.host_in), bytes, CU_MEMHOSTALLOC_PORTABLE));
    WL_CK(cuMemAlloc(&l.in, bytes));
    WL_CK(cuMemAlloc(&l.out, bytes));
    WL_CK(cuMemAlloc(&l.copy, bytes));
    WL_CK(cuEventCreate(&l.done, CU_EVENT_DISABLE_TIMING));
    WL_CK(cuEventCreate(&l.copied, CU_EVENT_DISABLE_TIMING));
  }
  const CUstream main = lanes[0].stream;
  CUdeviceptr acc = 0, state = 0;
  WL_CK(cuMemAlloc(&acc, bytes));
  WL_CK(cuMemAlloc(&state, bytes));
  const uint64_t host_bytes = (bytes + 4095) / 4096 * 4096;
  auto *host_state = static_cast<uint64_t *>(std::aligned_alloc(4096, host_bytes));
  if (host_state == nullptr) fail(kExitCuda, "out of host memory (%llu bytes)", static_cast<unsigned long long>(host_bytes));
  WL_CK(cuMemHostRegister(host_state, host_bytes, CU_MEMHOSTREGISTER_PORTABLE));
  CUevent start = nullptr, end = nullptr;
  WL_CK(cuEventCreate(&start, CU_EVENT_DEFAULT));
  WL_CK(cuEventCreate(&end, CU_EVENT_DEFAULT));
  WL_CK(cuMemsetD8Async(state, kStateByte, bytes, main));
  WL_CK(cuStreamSynchronize(main));
  say("stat priorities least=%d greatest=%d", least, greatest);
  say("ready");

  Model m(sh);
  const uint32_t grid = grid_for(sh.words);
  double gpu_ms = 0;
  const uint64_t ran = run_steps(cli, [&](uint64_t k) {
    WL_CK(cuEventRecord(start, main));
    WL_CK(cuMemsetD32Async(acc, 0, sh.words * 2, main));
    for (uint64_t s = 0; s < sh.streams; ++s) {  // in: host -> device, transform
      Lane &l = lanes[s];
      sh.fill_input(l.host_in, k, s);
      WL_CK(cuMemcpyHtoDAsync(l.in, l.host_in, bytes, l.stream));
      launch(transform, grid, 1, l.stream, l.in, l.out, sh.words, sh.key(k, s));
      WL_CK(cuEventRecord(l.done, l.stream));
    }
    for (uint64_t s = 0; s < sh.streams; ++s) {  // each lane copies its neighbour's result
      Lane &l = lanes[s], &next = lanes[(s + 1) % sh.streams];
      WL_CK(cuStreamWaitEvent(l.stream, next.done, 0));
      WL_CK(cuMemcpyDtoDAsync(l.copy, next.out, bytes, l.stream));
      WL_CK(cuEventRecord(l.copied, l.stream));
    }
    for (uint64_t s = 0; s < sh.streams; ++s) {  // gather on the main stream
      WL_CK(cuStreamWaitEvent(main, lanes[s].copied, 0));
      launch(accumulate, grid, 1, main, acc, lanes[s].copy, sh.words, s);
    }
    launch(fold, grid, 1, main, state, acc, sh.words);
    WL_CK(cuMemcpyDtoHAsync(host_state, state, bytes, main));
    WL_CK(cuEventRecord(end, main));
    WL_CK(cuEventSynchronize(end));
    WL_CK(cuEventQuery(end));
    for (const Lane &l : lanes) WL_CK(cuStreamQuery(l.stream));
    float ms = -1;
    WL_CK(cuEventElapsedTime(&ms, start, end));
    gpu_ms += ms;
    m.step(k);
    return ms >= 0 && std::memcmp(host_state, m.state().data(), bytes) == 0;
  });

  const uint64_t sum = cpu_digest(host_state, sh.words, 0);
  say("stat gpu_ms=%.3f steps=%llu", gpu_ms, static_cast<unsigned long long>(ran));
  print_checksum(sum);
  WL_CK(cuMemHostUnregister(host_state));
  std::free(host_state);
  for (Lane &l : lanes) {
    WL_CK(cuStreamDestroy(l.stream));
    WL_CK(cuEventDestroy(l.done));
    WL_CK(cuEventDestroy(l.copied));
    WL_CK(cuMemFreeHost(l.host_in));
    for (CUdeviceptr p : {l.in, l.out, l.copy}) WL_CK(cuMemFree(p));
  }
  WL_CK(cuEventDestroy(start));
  WL_CK(cuEventDestroy(end));
  WL_CK(cuMemFree(acc));
  WL_CK(cuMemFree(state));
  return kExitOk;
}

}  // namespace
}  // namespace phos::workloads

int main(int argc, char **argv) {
  using namespace phos::workloads;
  Cli cli("streams", 100,
          {{"streams", 4, "streams (even ones at the greatest priority, odd ones at the least)"},
           {"kib", 256, "data per stream, KiB"}});
  cli.parse(argc, argv);
  cli.print_config();
  const Shape sh(cli);
  return cli.reference() ? reference(cli, sh) : run(cli, sh);
}
