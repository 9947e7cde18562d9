// cudasim plugin: CPU implementations of libphos's helper kernels (kernels/chunk-hash.cu), bound by PTX
// entry name. Same function as the GPU (chunk-hash.h), so hash rounds on cudasim give GPU bits.
#include <cstring>

#include <phos/cudasim.h>

#include "src/chunk-hash.h"

namespace {

template <typename T>
T param(const cudasim_launch* l, uint32_t i) {
  T v;
  memcpy(&v, l->params + l->param_offset[i], sizeof v);
  return v;
}

void chunk_hash(const cudasim_launch* l, uint32_t bx, uint32_t, uint32_t, void*) {
  if (l->num_params < 8) return;
  auto base = param<uint64_t>(l, 0);
  auto idx = param<const uint32_t*>(l, 1);
  auto n = param<uint32_t>(l, 2);
  auto chunk_bytes = param<uint64_t>(l, 3);
  auto lo = param<uint64_t>(l, 4);
  auto hi = param<uint64_t>(l, 5);
  auto hashes = param<uint64_t*>(l, 6);
  auto ptrwords = param<uint32_t*>(l, 7);
  if (bx >= n) return;
  const auto* p = reinterpret_cast<const uint64_t*>(base + static_cast<uint64_t>(idx[bx]) * chunk_bytes);
  uint32_t cnt = 0;
  hashes[idx[bx]] = phos_chunk_hash_ref(p, chunk_bytes / 8, lo, hi, &cnt);
  ptrwords[bx] = cnt;
}

void chunk_compare(const cudasim_launch* l, uint32_t bx, uint32_t, uint32_t, void*) {
  if (l->num_params < 5) return;
  auto idx = param<const uint32_t*>(l, 0);
  auto n = param<uint32_t>(l, 1);
  auto hashes = param<const uint64_t*>(l, 2);
  auto prev = param<uint64_t*>(l, 3);
  auto changed = param<uint8_t*>(l, 4);
  for (uint32_t t = 0; t < l->block[0]; ++t) {
    uint32_t k = bx * l->block[0] + t;
    if (k >= n) return;
    uint32_t c = idx[k];
    changed[k] = hashes[c] != prev[c];
    prev[c] = hashes[c];
  }
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int cudasim_plugin_register(const cudasim_host_api* api) {
  if (!api || api->abi_version != CUDASIM_ABI_VERSION) return -1;
  if (api->register_kernel(PHOS_CHUNK_HASH_ENTRY, chunk_hash, 0)) return -1;
  if (api->register_kernel(PHOS_CHUNK_COMPARE_ENTRY, chunk_compare, 0)) return -1;
  return 0;
}
