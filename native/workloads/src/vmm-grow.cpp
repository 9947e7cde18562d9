// vmm-grow: one reserved VA range whose mapping grows segment by segment (cuMemCreate, cuMemMap,
// cuMemSetAccess) and shrinks back (cuMemUnmap, cuMemRelease), like PyTorch's expandable segments.
// Every step updates the whole mapped range in one launch across all its physical allocations, and the
// contents are checked against a pure-CPU model; growth must leave the old contents intact.
#include <algorithm>
#include <vector>

#include "common.h"
#include "vmm-grow-ptx.h"

namespace phos::workloads {
namespace {

struct Shape {
  uint64_t seg_bytes, seg_words, max_segs, reserve_bytes, grow_every, seed;
  bool fd_handles;

  explicit Shape(const Cli &cli)
      : seg_bytes(cli.get("seg-mib") << 20), seg_words(seg_bytes / 8),
        max_segs(seg_bytes == 0 ? 0 : (cli.get("max-mib") << 20) / seg_bytes), grow_every(cli.get("grow-every")),
        seed(wl_mix64(cli.get("seed"))), fd_handles(cli.get("fd-handles") != 0) {
    if (seg_bytes == 0 || max_segs < 2 || grow_every == 0)
      fail(kExitUsage, "need --seg-mib >= 1, --max-mib >= 2 * --seg-mib and --grow-every >= 1");
    reserve_bytes = std::max(cli.get("reserve-mib") << 20, max_segs * seg_bytes);
    reserve_bytes = (reserve_bytes + seg_bytes - 1) / seg_bytes * seg_bytes;
  }
  uint64_t fill_seed(uint64_t k) const { return wl_mix64(seed ^ (k * WL_GOLDEN)); }
  // The segment count after step k's resize: +1 every grow_every steps, back to half when full.
  uint64_t next_segs(uint64_t k, uint64_t segs) const {
    if ((k - 1) % grow_every != 0) return segs;
    return segs < max_segs ? segs + 1 : max_segs / 2;
  }
};

class Model {
 public:
  explicit Model(const Shape &sh) : sh_(sh) {}
  void resize(uint64_t k, uint64_t segs) {
    const uint64_t old = data_.size(), want = segs * sh_.seg_words, seed = sh_.fill_seed(k);
    data_.resize(want);
    for (uint64_t i = old; i < want; ++i) data_[i] = wl_pattern(seed, i);
  }
  void update(uint64_t k) {
    for (uint64_t i = 0; i < data_.size(); ++i) data_[i] = wl_lcg_step(data_[i], k, i);
  }
  uint64_t digest() const { return cpu_digest(data_.data(), data_.size(), 0); }
  uint64_t words() const { return data_.size(); }

 private:
  const Shape &sh_;
  std::vector<uint64_t> data_;
};

uint64_t checksum(uint64_t digest, uint64_t words) { return wl_mix64(digest ^ words); }

int reference(const Cli &cli, const Shape &sh) {
  const uint64_t steps = cli.get("steps");
  if (steps == 0) fail(kExitUsage, "--reference needs --steps > 0");
  Model m(sh);
  for (uint64_t k = 1, segs = 0; k <= steps; ++k) {
    segs = sh.next_segs(k, segs);
    m.resize(k, segs);
    m.update(k);
  }
  print_checksum(checksum(m.digest(), m.words()));
  return kExitOk;
}

int run(const Cli &cli, const Shape &sh) {
  Device device(static_cast<int>(cli.get("device")));
  Module mod(kPtx);
  const CUfunction fill = mod.fn("wl_vmm_fill"), update = mod.fn("wl_vmm_update"), digest = mod.fn("wl_digest");

  int vmm = 0;
  if (cuDeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, device.dev()) == CUDA_SUCCESS &&
      vmm == 0)
    fail(kExitCuda, "device does not support virtual memory management");
  CUmemAllocationProp prop = {};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device.dev();
  prop.requestedHandleTypes = sh.fd_handles ? CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR : CU_MEM_HANDLE_TYPE_NONE;
  size_t gran = 0, recommended = 0;
  WL_CK(cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
  WL_CK(cuMemGetAllocationGranularity(&recommended, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
  if (gran == 0 || sh.seg_bytes % gran != 0)
    fail(kExitUsage, "--seg-mib (%llu bytes) is not a multiple of the allocation granularity (%zu)",
         static_cast<unsigned long long>(sh.seg_bytes), gran);
  CUmemAccessDesc access = {};
  access.location = prop.location;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;

  CUdeviceptr va = 0, scratch = 0;
  WL_CK(cuMemAddressReserve(&va, sh.reserve_bytes, gran, 0, 0));
  WL_CK(cuMemAlloc(&scratch, 8));
  CUstream st = nullptr;
  WL_CK(cuStreamCreate(&st, CU_STREAM_NON_BLOCKING));
  std::vector<CUmemGenericAllocationHandle> handles;
  say("stat granularity=%zu recommended=%zu reserved=%llu va=0x%llx", gran, recommended,
      static_cast<unsigned long long>(sh.reserve_bytes), static_cast<unsigned long long>(va));
  say("ready");

  Model m(sh);
  uint64_t last = 0;  // the device digest after the previous step (== the model's)
  const uint64_t ran = run_steps(cli, [&](uint64_t k) {
    const uint64_t want = sh.next_segs(k, handles.size());
    bool ok = true;
    if (want < handles.size()) {  // shrink: the freed tail leaves the model too
      WL_CK(cuStreamSynchronize(st));
      while (handles.size() > want) {
        const CUdeviceptr at = va + (handles.size() - 1) * sh.seg_bytes;
        WL_CK(cuMemUnmap(at, sh.seg_bytes));
        WL_CK(cuMemRelease(handles.back()));
        handles.pop_back();
      }
    } else if (want > handles.size()) {  // grow: map one more segment at the end and fill it
      const uint64_t old_words = handles.size() * sh.seg_words;
      const CUdeviceptr at = va + handles.size() * sh.seg_bytes;
      CUmemGenericAllocationHandle h = 0;
      WL_CK(cuMemCreate(&h, sh.seg_bytes, &prop, 0));
      WL_CK(cuMemMap(at, sh.seg_bytes, 0, h, 0));
      WL_CK(cuMemSetAccess(at, sh.seg_bytes, &access, 1));
      handles.push_back(h);
      launch(fill, grid_for(sh.seg_words), 1, st, at, sh.seg_words, sh.fill_seed(k), old_words);
      if (old_words != 0 && device_digest(digest, va, old_words, 0, scratch, st) != last) {
        std::fprintf(stderr, "vmm-grow: step %llu: contents below the new segment changed while growing\n",
                     static_cast<unsigned long long>(k));
        ok = false;
      }
    }
    m.resize(k, want);
    const uint64_t words = handles.size() * sh.seg_words;
    launch(update, grid_for(words), 1, st, va, words, k);
    m.update(k);
    last = device_digest(digest, va, words, 0, scratch, st);
    return ok && last == m.digest();
  });

  const uint64_t sum = checksum(last, handles.size() * sh.seg_words);
  say("stat segments=%zu mapped=%llu steps=%llu", handles.size(),
      static_cast<unsigned long long>(handles.size() * sh.seg_bytes), static_cast<unsigned long long>(ran));
  print_checksum(sum);
  WL_CK(cuStreamSynchronize(st));
  for (size_t i = handles.size(); i-- > 0;) {
    WL_CK(cuMemUnmap(va + i * sh.seg_bytes, sh.seg_bytes));
    WL_CK(cuMemRelease(handles[i]));
  }
  WL_CK(cuMemAddressFree(va, sh.reserve_bytes));
  WL_CK(cuStreamDestroy(st));
  WL_CK(cuMemFree(scratch));
  return kExitOk;
}

}  // namespace
}  // namespace phos::workloads

int main(int argc, char **argv) {
  using namespace phos::workloads;
  Cli cli("vmm-grow", 60,
          {{"max-mib", 16, "largest mapping, MiB; when reached it shrinks back to half"},
           {"seg-mib", 2, "segment size, MiB (a multiple of the allocation granularity)"},
           {"grow-every", 2, "grow (or shrink when full) every K steps"},
           {"reserve-mib", 256, "VA range reserved up front, MiB (at least --max-mib)"},
           {"fd-handles", 1, "1: request POSIX fd shareable handles, 0: none"}});
  cli.parse(argc, argv);
  cli.print_config();
  const Shape sh(cli);
  return cli.reference() ? reference(cli, sh) : run(cli, sh);
}
