// counter: big cold buffers (several cuMemAlloc allocations) filled once and verified every K steps,
// plus a hot buffer updated every step — a training loop's shape. With --devices N the cold buffers
// alternate over N devices and the hot buffer is peer-copied to the second device every step. Every value is checked against a
// pure-CPU model; --reference runs the model alone.
#include <memory>
#include <vector>

#include "common.h"
#include "counter-ptx.h"

namespace phos::workloads {
namespace {

// Where every word lives: cold words are numbered globally across the buffers, so a buffer's pattern
// and digest positions are its base + i.
struct Layout {
  std::vector<uint64_t> base, words;  // per cold buffer
  uint64_t cold_words = 0, hot_words = 0;
  uint64_t cold_seed = 0, hot_seed = 0;

  explicit Layout(const Cli &cli) {
    const uint64_t buffers = cli.get("buffers");
    cold_words = cli.get("mib") << 17;
    hot_words = cli.get("hot-kib") << 7;
    if (buffers == 0 || cold_words < buffers || hot_words == 0)
      fail(kExitUsage, "need --buffers >= 1, --mib >= 1 and --hot-kib >= 1");
    for (uint64_t b = 0, at = 0; b < buffers; ++b) {
      const uint64_t n = cold_words / buffers + (b + 1 == buffers ? cold_words % buffers : 0);
      base.push_back(at);
      words.push_back(n);
      at += n;
    }
    cold_seed = wl_mix64(cli.get("seed"));
    hot_seed = wl_mix64(cold_seed ^ 0x686f74ull);
  }
};

// The CPU model: the hot buffer's exact contents and each cold buffer's expected digest.
class Model {
 public:
  explicit Model(const Layout &l) : hot_(l.hot_words) {
    for (uint64_t i = 0; i < l.hot_words; ++i) hot_[i] = wl_pattern(l.hot_seed, i);
    for (size_t b = 0; b < l.words.size(); ++b) {
      uint64_t s = 0;
      for (uint64_t i = l.base[b], end = l.base[b] + l.words[b]; i < end; ++i)
        s += wl_digest_term(wl_pattern(l.cold_seed, i), i);
      cold_.push_back(s);
    }
  }
  void step(uint64_t k) {
    for (uint64_t i = 0; i < hot_.size(); ++i) hot_[i] = wl_lcg_step(hot_[i], k, i);
  }
  uint64_t hot_digest() const { return cpu_digest(hot_.data(), hot_.size(), 0); }
  uint64_t cold_digest(size_t b) const { return cold_[b]; }
  uint64_t cold_total() const {
    uint64_t s = 0;
    for (uint64_t d : cold_) s += d;
    return s;
  }

 private:
  std::vector<uint64_t> hot_, cold_;
};

uint64_t checksum(uint64_t hot_digest, uint64_t cold_total) { return wl_mix64(hot_digest ^ wl_mix64(cold_total)); }

int reference(const Cli &cli, const Layout &l) {
  const uint64_t steps = cli.get("steps");
  if (steps == 0) fail(kExitUsage, "--reference needs --steps > 0");
  Model m(l);
  for (uint64_t k = 1; k <= steps; ++k) m.step(k);
  print_checksum(checksum(m.hot_digest(), m.cold_total()));
  return kExitOk;
}

// One device's share of the work: its context, the module loaded in it (modules are per context on a
// GPU), its functions and its 16-byte-per-buffer scratch.
struct Gpu {
  CUcontext ctx = nullptr;
  Module *mod = nullptr;
  CUfunction fill = nullptr, verify = nullptr, step = nullptr, digest = nullptr;
  CUdeviceptr out = 0;
  size_t stack = 0;  // the context's per-thread stack limit as the program found it
};

void use(const Gpu &g) { WL_CK(cuCtxSetCurrent(g.ctx)); }

// Context settings are the app's too: a checkpoint or a freeze may change them only while the app cannot
// see it (libphos lowers the stack limit while frozen). False, and a line on stderr, when one differs.
bool limits_kept(const std::vector<Gpu> &gpus, uint64_t k) {
  bool good = true;
  for (size_t d = 0; d < gpus.size(); ++d) {
    use(gpus[d]);
    size_t v = 0;
    WL_CK(cuCtxGetLimit(&v, CU_LIMIT_STACK_SIZE));
    if (v != gpus[d].stack) {
      std::fprintf(stderr, "counter: step %llu: device %zu's stack limit is %zu B, was %zu B\n",
                   static_cast<unsigned long long>(k), d, v, gpus[d].stack);
      good = false;
    }
  }
  use(gpus[0]);
  return good;
}

// Verifies every cold buffer on its own device against the pattern and the model's digests; returns
// the sum of the device digests, or sets ok = false. Cold buffer b lives on device b % gpus.size().
uint64_t verify_cold(const Layout &l, const Model &m, const std::vector<Gpu> &gpus, const std::vector<CUdeviceptr> &cold,
                     bool &ok) {
  const size_t nb = cold.size(), nd = gpus.size();
  std::vector<uint64_t> host(2 * nb);
  for (size_t d = 0; d < nd; ++d) {
    const Gpu &g = gpus[d];
    use(g);
    WL_CK(cuMemsetD32Async(g.out, 0, 4 * nb, nullptr));
    for (size_t b = d; b < nb; b += nd)
      launch(g.verify, grid_for(l.words[b]), 1, nullptr, cold[b], l.words[b], l.cold_seed, l.base[b],
             CUdeviceptr(g.out + 16 * b));
    std::vector<uint64_t> part(2 * nb);
    WL_CK(cuMemcpyDtoH(part.data(), g.out, 16 * nb));
    for (size_t b = d; b < nb; b += nd) host[2 * b] = part[2 * b], host[2 * b + 1] = part[2 * b + 1];
  }
  use(gpus[0]);
  uint64_t total = 0;
  for (size_t b = 0; b < nb; ++b) {
    if (host[2 * b] != 0 || host[2 * b + 1] != m.cold_digest(b)) {
      std::fprintf(stderr, "counter: cold buffer %zu: %llu words differ from the pattern, digest %016llx (model %016llx)\n",
                   b, static_cast<unsigned long long>(host[2 * b]), static_cast<unsigned long long>(host[2 * b + 1]),
                   static_cast<unsigned long long>(m.cold_digest(b)));
      ok = false;
    }
    total += host[2 * b + 1];
  }
  return total;
}

// Every device after the first may read and write the others' memory (a multi-GPU job's usual set-up).
void enable_peers(const std::vector<Gpu> &gpus) {
  for (const Gpu &a : gpus) {
    use(a);
    for (const Gpu &b : gpus)
      if (&a != &b) WL_CK(cuCtxEnablePeerAccess(b.ctx, 0));
  }
  use(gpus[0]);
}

// The hot buffer's copy on device 1 (several devices only): refreshed by a peer copy every step and
// digested there, so each step touches both devices and moves bytes between them.
uint64_t mirror_digest(const Layout &l, const std::vector<Gpu> &gpus, CUdeviceptr mirror, CUdeviceptr hot) {
  const Gpu &g0 = gpus[0], &g1 = gpus[1];
  WL_CK(cuMemcpyPeerAsync(mirror, g1.ctx, hot, g0.ctx, l.hot_words * 8, nullptr));
  WL_CK(cuCtxSynchronize());
  use(g1);
  const uint64_t d = device_digest(g1.digest, mirror, l.hot_words, 0, g1.out, nullptr);
  use(g0);
  return d;
}

int run(const Cli &cli, const Layout &l) {
  const uint64_t ndev = cli.get("devices");
  if (ndev == 0 || ndev > 8) fail(kExitUsage, "--devices must be 1..8");
  Device device(static_cast<int>(cli.get("device")));
  std::vector<Gpu> gpus(ndev);
  std::vector<std::unique_ptr<Module>> mods;
  for (uint64_t d = 0; d < ndev; ++d) {
    CUdevice dev = 0;
    WL_CK(cuDeviceGet(&dev, static_cast<int>(device.dev() + d)));
    WL_CK(cuDevicePrimaryCtxRetain(&gpus[d].ctx, dev));
    use(gpus[d]);
    mods.push_back(std::make_unique<Module>(kPtx));
    Gpu &g = gpus[d];
    WL_CK(cuCtxGetLimit(&g.stack, CU_LIMIT_STACK_SIZE));
    g.mod = mods.back().get();
    g.fill = g.mod->fn("wl_counter_fill"), g.verify = g.mod->fn("wl_counter_verify");
    g.step = g.mod->fn("wl_counter_step"), g.digest = g.mod->fn("wl_digest");
  }
  if (ndev > 1) enable_peers(gpus);
  std::vector<CUdeviceptr> cold(l.words.size());
  for (size_t b = 0; b < cold.size(); ++b) {
    use(gpus[b % ndev]);
    WL_CK(cuMemAlloc(&cold[b], l.words[b] * 8));
    launch(gpus[b % ndev].fill, grid_for(l.words[b]), 1, nullptr, cold[b], l.words[b], l.cold_seed, l.base[b]);
  }
  for (Gpu &g : gpus) {
    use(g);
    WL_CK(cuMemAlloc(&g.out, 16 * cold.size()));
    WL_CK(cuCtxSynchronize());
  }
  CUdeviceptr hot = 0, mirror = 0;
  if (ndev > 1) {
    use(gpus[1]);
    WL_CK(cuMemAlloc(&mirror, l.hot_words * 8));
  }
  const Gpu &g0 = gpus[0];
  use(g0);
  WL_CK(cuMemAlloc(&hot, l.hot_words * 8));
  launch(g0.fill, grid_for(l.hot_words), 1, nullptr, hot, l.hot_words, l.hot_seed, uint64_t(0));
  WL_CK(cuCtxSynchronize());

  Model m(l);
  bool ok = true;
  verify_cold(l, m, gpus, cold, ok);
  if (!ok || device_digest(g0.digest, hot, l.hot_words, 0, g0.out, nullptr) != m.hot_digest() ||
      (ndev > 1 && mirror_digest(l, gpus, mirror, hot) != m.hot_digest()))
    fail(kExitCorrupt, "the freshly filled buffers differ from the model");
  say("ready");

  const uint64_t every = cli.get("verify-every");
  uint64_t hot_dev = 0;
  const uint64_t ran = run_steps(cli, [&](uint64_t k) {
    launch(g0.step, grid_for(l.hot_words), 1, nullptr, hot, l.hot_words, k);
    m.step(k);
    hot_dev = device_digest(g0.digest, hot, l.hot_words, 0, g0.out, nullptr);
    bool good = hot_dev == m.hot_digest();
    if (ndev > 1 && mirror_digest(l, gpus, mirror, hot) != m.hot_digest()) {
      std::fprintf(stderr, "counter: step %llu: the hot buffer's copy on device 1 differs\n", static_cast<unsigned long long>(k));
      good = false;
    }
    if (every != 0 && k % every == 0) {
      verify_cold(l, m, gpus, cold, good);
      good = limits_kept(gpus, k) && good;
    }
    return good;
  });

  ok = true;
  const uint64_t cold_dev = verify_cold(l, m, gpus, cold, ok);
  const uint64_t sum = checksum(hot_dev, cold_dev);
  if (!ok || sum != checksum(m.hot_digest(), m.cold_total()))
    fail(kExitCorrupt, "final check after %llu steps differs from the model", static_cast<unsigned long long>(ran));
  print_checksum(sum);
  for (size_t b = 0; b < cold.size(); ++b) {
    use(gpus[b % ndev]);
    WL_CK(cuMemFree(cold[b]));
  }
  for (Gpu &g : gpus) {
    use(g);
    WL_CK(cuMemFree(g.out));
  }
  if (mirror) WL_CK(cuMemFree(mirror));
  use(g0);
  WL_CK(cuMemFree(hot));
  mods.clear();
  for (uint64_t d = 0; d < ndev; ++d) cuDevicePrimaryCtxRelease(static_cast<CUdevice>(device.dev() + d));
  return kExitOk;
}

}  // namespace
}  // namespace phos::workloads

int main(int argc, char **argv) {
  using namespace phos::workloads;
  Cli cli("counter", 100,
          {{"mib", 16, "cold data, MiB, split over --buffers allocations"},
           {"buffers", 4, "cold allocations"},
           {"hot-kib", 256, "hot buffer, KiB, updated every step"},
           {"verify-every", 10, "verify all cold data every K steps (0: only at the end)"},
           {"devices", 1, "devices --device.. used: cold buffers alternate over them; with 2 or more the hot buffer is "
                          "peer-copied to the second every step (same checksum)"}});
  cli.parse(argc, argv);
  cli.print_config();
  const Layout l(cli);
  return cli.reference() ? reference(cli, l) : run(cli, l);
}
