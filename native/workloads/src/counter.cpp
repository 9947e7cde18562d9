// counter: big cold buffers (several cuMemAlloc allocations) filled once and verified every K steps,
// plus a hot buffer updated every step — a training loop's shape. Every value is checked against a
// pure-CPU model; --reference runs the model alone.
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

// Verifies every cold buffer on the GPU against the pattern and the model's digests; returns the
// sum of the device digests, or sets ok = false.
uint64_t verify_cold(const Layout &l, const Model &m, CUfunction verify, const std::vector<CUdeviceptr> &cold,
                     CUdeviceptr out, bool &ok) {
  const size_t nb = cold.size();
  std::vector<uint64_t> host(2 * nb);
  WL_CK(cuMemsetD32Async(out, 0, 4 * nb, nullptr));
  for (size_t b = 0; b < nb; ++b)
    launch(verify, grid_for(l.words[b]), 1, nullptr, cold[b], l.words[b], l.cold_seed, l.base[b],
           CUdeviceptr(out + 16 * b));
  WL_CK(cuMemcpyDtoH(host.data(), out, 16 * nb));
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

int run(const Cli &cli, const Layout &l) {
  Device device(static_cast<int>(cli.get("device")));
  Module mod(kPtx);
  const CUfunction fill = mod.fn("wl_counter_fill"), verify = mod.fn("wl_counter_verify"),
                   step = mod.fn("wl_counter_step"), digest = mod.fn("wl_digest");
  std::vector<CUdeviceptr> cold(l.words.size());
  for (size_t b = 0; b < cold.size(); ++b) WL_CK(cuMemAlloc(&cold[b], l.words[b] * 8));
  CUdeviceptr hot = 0, out = 0;
  WL_CK(cuMemAlloc(&hot, l.hot_words * 8));
  WL_CK(cuMemAlloc(&out, 16 * cold.size()));

  for (size_t b = 0; b < cold.size(); ++b)
    launch(fill, grid_for(l.words[b]), 1, nullptr, cold[b], l.words[b], l.cold_seed, l.base[b]);
  launch(fill, grid_for(l.hot_words), 1, nullptr, hot, l.hot_words, l.hot_seed, uint64_t(0));
  WL_CK(cuCtxSynchronize());

  Model m(l);
  bool ok = true;
  verify_cold(l, m, verify, cold, out, ok);
  if (!ok || device_digest(digest, hot, l.hot_words, 0, out, nullptr) != m.hot_digest())
    fail(kExitCorrupt, "the freshly filled buffers differ from the model");
  say("ready");

  const uint64_t every = cli.get("verify-every");
  uint64_t hot_dev = 0;
  const uint64_t ran = run_steps(cli, [&](uint64_t k) {
    launch(step, grid_for(l.hot_words), 1, nullptr, hot, l.hot_words, k);
    m.step(k);
    hot_dev = device_digest(digest, hot, l.hot_words, 0, out, nullptr);
    bool good = hot_dev == m.hot_digest();
    if (every != 0 && k % every == 0) verify_cold(l, m, verify, cold, out, good);
    return good;
  });

  ok = true;
  const uint64_t cold_dev = verify_cold(l, m, verify, cold, out, ok);
  const uint64_t sum = checksum(hot_dev, cold_dev);
  if (!ok || sum != checksum(m.hot_digest(), m.cold_total()))
    fail(kExitCorrupt, "final check after %llu steps differs from the model", static_cast<unsigned long long>(ran));
  print_checksum(sum);
  for (CUdeviceptr p : cold) WL_CK(cuMemFree(p));
  WL_CK(cuMemFree(hot));
  WL_CK(cuMemFree(out));
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
           {"verify-every", 10, "verify all cold data every K steps (0: only at the end)"}});
  cli.parse(argc, argv);
  cli.print_config();
  const Layout l(cli);
  return cli.reference() ? reference(cli, l) : run(cli, l);
}
