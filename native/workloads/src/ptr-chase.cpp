// ptr-chase: buffers reached only through a table of entries in device memory. Launch parameters hold
// the table's address and scalars, never the buffers'; writes land at data-dependent places, and the
// GPU itself reshuffles the table (device pointers moved by device code). This is the case a launch's
// read/write set speculated from its parameters misses. Checked every step against a pure-CPU model.
#include <cstring>
#include <vector>

#include "common.h"
#include "kernels/ptr-chase.h"
#include "ptr-chase-ptx.h"

namespace phos::workloads {
namespace {

struct Shape {
  uint64_t nbuf, base_words, walkers, hops, permute_every, seed;
  explicit Shape(const Cli &cli)
      : nbuf(cli.get("buffers")), base_words(cli.get("kib") << 7), walkers(cli.get("walkers")),
        hops(cli.get("hops")), permute_every(cli.get("permute-every")), seed(wl_mix64(cli.get("seed"))) {
    if (nbuf == 0 || nbuf > 4096 || base_words == 0 || walkers == 0)
      fail(kExitUsage, "need 1 <= --buffers <= 4096, --kib >= 1 and --walkers >= 1");
  }
  uint64_t entries() const { return 2 * nbuf; }
  uint64_t len(uint64_t id) const { return base_words * (1 + id % 3); }
  bool permutes(uint64_t k) const { return permute_every != 0 && k % permute_every == 0; }
};

// The buffers by id, and the table as the list of ids at each position.
class Model {
 public:
  explicit Model(const Shape &sh) : sh_(sh), bufs_(sh.entries()), table_(sh.entries()) {
    for (uint64_t id = 0; id < sh.entries(); ++id) {
      table_[id] = id;
      bufs_[id].resize(sh.len(id));
      for (uint64_t i = 0; i < bufs_[id].size(); ++i) bufs_[id][i] = wl_pattern(sh.seed ^ id, i);
    }
  }
  // wl_chase_step, walker by walker: reads never see this step's writes (other half), adds commute.
  void step(uint64_t k) {
    const uint64_t rd = (k & 1) * sh_.nbuf, wr = sh_.nbuf - rd;
    for (uint64_t w = 0; w < sh_.walkers; ++w) {
      uint64_t s = wl_chase_seed(k, w);
      for (uint64_t h = 0; h < sh_.hops; ++h) {
        const auto &rb = bufs_[table_[rd + s % sh_.nbuf]];
        const uint64_t v = rb[(s >> 17) % rb.size()];
        s = wl_mix64(s ^ v);
        auto &wb = bufs_[table_[wr + s % sh_.nbuf]];
        wb[(s >> 23) % wb.size()] += v ^ s;
      }
    }
    if (sh_.permutes(k))
      for (uint64_t i = table_.size() - 1; i > 0; --i) std::swap(table_[i], table_[wl_chase_pick(k, i)]);
  }
  uint64_t digest(uint64_t id) const { return cpu_digest(bufs_[id].data(), bufs_[id].size(), 0); }
  uint64_t id_at(uint64_t pos) const { return table_[pos]; }
  uint64_t checksum() const {
    std::vector<uint64_t> d(sh_.entries());
    for (uint64_t id = 0; id < d.size(); ++id) d[id] = digest(id);
    return fold(d);
  }
  static uint64_t fold(const std::vector<uint64_t> &digests) {
    uint64_t h = 0;
    for (uint64_t d : digests) h = wl_mix64(h ^ d);
    return h;
  }

 private:
  const Shape &sh_;
  std::vector<std::vector<uint64_t>> bufs_;
  std::vector<uint64_t> table_;
};

int reference(const Cli &cli, const Shape &sh) {
  const uint64_t steps = cli.get("steps");
  if (steps == 0) fail(kExitUsage, "--reference needs --steps > 0");
  Model m(sh);
  for (uint64_t k = 1; k <= steps; ++k) m.step(k);
  print_checksum(m.checksum());
  return kExitOk;
}

int run(const Cli &cli, const Shape &sh) {
  Device device(static_cast<int>(cli.get("device")));
  Module mod(kPtx);
  const CUfunction fill = mod.fn("wl_chase_fill"), step = mod.fn("wl_chase_step"),
                   permute = mod.fn("wl_chase_permute"), digest = mod.fn("wl_chase_digest");
  const uint64_t n = sh.entries();
  std::vector<wl_chase_entry> table(n), back(n);
  for (uint64_t id = 0; id < n; ++id) {
    CUdeviceptr p = 0;
    WL_CK(cuMemAlloc(&p, sh.len(id) * 8));
    table[id] = {p, sh.len(id), id, 0};
  }
  CUdeviceptr dtable = 0, dout = 0;
  WL_CK(cuMemAlloc(&dtable, n * sizeof(wl_chase_entry)));
  WL_CK(cuMemAlloc(&dout, n * 8));
  WL_CK(cuMemcpyHtoD(dtable, table.data(), n * sizeof(wl_chase_entry)));
  CUstream st = nullptr;
  WL_CK(cuStreamCreate(&st, CU_STREAM_DEFAULT));
  const uint32_t grid = grid_for(3 * sh.base_words);
  launch(fill, grid, static_cast<uint32_t>(n), st, dtable, sh.seed);
  WL_CK(cuStreamSynchronize(st));

  Model m(sh);
  std::vector<uint64_t> got(n);
  // Reads the table and every buffer's digest back and compares them with the model.
  auto check = [&]() {
    WL_CK(cuMemsetD32Async(dout, 0, 2 * n, st));
    launch(digest, grid, static_cast<uint32_t>(n), st, dtable, dout);
    WL_CK(cuMemcpyDtoHAsync(got.data(), dout, n * 8, st));
    WL_CK(cuMemcpyDtoHAsync(back.data(), dtable, n * sizeof(wl_chase_entry), st));
    WL_CK(cuStreamSynchronize(st));
    bool ok = true;
    for (uint64_t pos = 0; pos < n; ++pos) {
      const wl_chase_entry want = table[m.id_at(pos)];
      if (std::memcmp(&back[pos], &want, sizeof want) != 0) {
        std::fprintf(stderr, "ptr-chase: table entry %llu holds id %llu, model says %llu\n",
                     static_cast<unsigned long long>(pos), static_cast<unsigned long long>(back[pos].id),
                     static_cast<unsigned long long>(want.id));
        ok = false;
      }
    }
    for (uint64_t id = 0; id < n; ++id)
      if (got[id] != m.digest(id)) {
        std::fprintf(stderr, "ptr-chase: buffer %llu digest %016llx, model %016llx\n", static_cast<unsigned long long>(id),
                     static_cast<unsigned long long>(got[id]), static_cast<unsigned long long>(m.digest(id)));
        ok = false;
      }
    return ok;
  };
  if (!check()) fail(kExitCorrupt, "the freshly filled buffers differ from the model");
  say("ready");

  const uint64_t wgrid = grid_for(sh.walkers);
  const uint64_t ran = run_steps(cli, [&](uint64_t k) {
    launch(step, static_cast<uint32_t>(wgrid), 1, st, dtable, sh.nbuf, sh.walkers, sh.hops, k);
    if (sh.permutes(k)) launch(permute, 1, 1, st, dtable, n, k);
    m.step(k);
    return check();
  });

  const uint64_t sum = Model::fold(got);
  say("stat steps=%llu", static_cast<unsigned long long>(ran));
  print_checksum(sum);
  WL_CK(cuStreamDestroy(st));
  for (const auto &e : table) WL_CK(cuMemFree(e.ptr));
  WL_CK(cuMemFree(dtable));
  WL_CK(cuMemFree(dout));
  return kExitOk;
}

}  // namespace
}  // namespace phos::workloads

int main(int argc, char **argv) {
  using namespace phos::workloads;
  Cli cli("ptr-chase", 100,
          {{"buffers", 8, "buffers per table half (2x this many allocations)"},
           {"kib", 64, "smallest buffer, KiB (buffer sizes are 1x, 2x, 3x this)"},
           {"walkers", 4096, "pointer-chasing threads per step"},
           {"hops", 8, "reads (and data-dependent writes) per walker per step"},
           {"permute-every", 5, "the GPU reshuffles the table every K steps (0: never)"}});
  cli.parse(argc, argv);
  cli.print_config();
  const Shape sh(cli);
  return cli.reference() ? reference(cli, sh) : run(cli, sh);
}
