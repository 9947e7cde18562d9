// CPU twins of the workloads' CUDA kernels (kernels/*.cu), registered with cudasim by entry name.
// Each computes exactly what its kernel computes; blocks may run concurrently on cudasim's pool, so
// shared results are added with atomics, as on the GPU. Launch geometry and parameters come from cudasim.
#include <phos/cudasim.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/mix.h"
#include "kernels/ptr-chase.h"

namespace phos::workloads::sim {
namespace {

// Aborts on a launch whose shape the kernels do not support: a mismatch between a .cu file and its
// twin here must never pass silently as a wrong checksum.
void expect(const cudasim_launch *l, uint32_t nparams, const char *entry) {
  if (l->num_params != nparams || l->block[1] != 1 || l->block[2] != 1) {
    std::fprintf(stderr, "workloads-sim: %s: %u params, block %ux%ux%u; expected %u params and a 1-D block\n",
                 entry, l->num_params, l->block[0], l->block[1], l->block[2], nparams);
    std::abort();
  }
}

template <class T> T param(const cudasim_launch *l, uint32_t i) {
  T v;
  std::memcpy(&v, l->params + l->param_offset[i], sizeof v);
  return v;
}

template <class T> T *ptr_param(const cudasim_launch *l, uint32_t i) {
  return reinterpret_cast<T *>(static_cast<uintptr_t>(param<uint64_t>(l, i)));
}

void atomic_add(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }

// The indices that block bx's threads visit in WL_GRID_STRIDE, in a cache-friendly order.
template <class F> void grid_stride(const cudasim_launch *l, uint32_t bx, uint64_t n, F &&f) {
  const uint64_t bd = l->block[0], stride = uint64_t(l->grid[0]) * bd;
  for (uint64_t base = uint64_t(bx) * bd; base < n; base += stride) {
    const uint64_t end = std::min(base + bd, n);
    for (uint64_t i = base; i < end; ++i) f(i);
  }
}

// ------------------------------------------------------------------------------------------ common

void digest(const cudasim_launch *l, uint32_t bx, uint32_t, uint32_t, void *) {
  expect(l, 4, "wl_digest");
  const uint64_t *p = ptr_param<const uint64_t>(l, 0);
  const uint64_t n = param<uint64_t>(l, 1), base = param<uint64_t>(l, 2);
  uint64_t s = 0;
  grid_stride(l, bx, n, [&](uint64_t i) { s += wl_digest_term(p[i], base + i); });
  atomic_add(ptr_param<uint64_t>(l, 3), s);
}

// ----------------------------------------------------------------------------------------- counter

void counter_fill(const cudasim_launch *l, uint32_t bx, uint32_t, uint32_t, void *) {
  expect(l, 4, "wl_counter_fill");
  uint64_t *p = ptr_param<uint64_t>(l, 0);
  const uint64_t n = param<uint64_t>(l, 1), seed = param<uint64_t>(l, 2), base = param<uint64_t>(l, 3);
  grid_stride(l, bx, n, [&](uint64_t i) { p[i] = wl_pattern(seed, base + i); });
}

void counter_verify(const cudasim_launch *l, uint32_t bx, uint32_t, uint32_t, void *) {
  expect(l, 5, "wl_counter_verify");
  const uint64_t *p = ptr_param<const uint64_t>(l, 0);
  const uint64_t n = param<uint64_t>(l, 1), seed = param<uint64_t>(l, 2), base = param<uint64_t>(l, 3);
  uint64_t bad = 0, sum = 0;
  grid_stride(l, bx, n, [&](uint64_t i) {
    bad += p[i] != wl_pattern(seed, base + i);
    sum += wl_digest_term(p[i], base + i);
  });
  uint64_t *out = ptr_param<uint64_t>(l, 4);
  atomic_add(out, bad);
  atomic_add(out + 1, sum);
}

void counter_step(const cudasim_launch *l, uint32_t bx, uint32_t, uint32_t, void *) {
  expect(l, 3, "wl_counter_step");
  uint64_t *hot = ptr_param<uint64_t>(l, 0);
  const uint64_t n = param<uint64_t>(l, 1), step = param<uint64_t>(l, 2);
  grid_stride(l, bx, n, [&](uint64_t i) { hot[i] = wl_lcg_step(hot[i], step, i); });
}

// ----------------------------------------------------------------------------------------- streams

void streams_transform(const cudasim_launch *l, uint32_t bx, uint32_t, uint32_t, void *) {
  expect(l, 4, "wl_streams_transform");
  const uint64_t *in = ptr_param<const uint64_t>(l, 0);
  uint64_t *out = ptr_param<uint64_t>(l, 1);
  const uint64_t n = param<uint64_t>(l, 2), key = param<uint64_t>(l, 3);
  grid_stride(l, bx, n, [&](uint64_t i) { out[i] = wl_mix64(in[i] ^ key) + i; });
}

void streams_accumulate(const cudasim_launch *l, uint32_t bx, uint32_t, uint32_t, void *) {
  expect(l, 4, "wl_streams_accumulate");
  uint64_t *acc = ptr_param<uint64_t>(l, 0);
  const uint64_t *src = ptr_param<const uint64_t>(l, 1);
  const uint64_t n = param<uint64_t>(l, 2), key = param<uint64_t>(l, 3);
  grid_stride(l, bx, n, [&](uint64_t i) { acc[i] += wl_mix64(src[i] + key); });
}

void streams_fold(const cudasim_launch *l, uint32_t bx, uint32_t, uint32_t, void *) {
  expect(l, 3, "wl_streams_fold");
  uint64_t *state = ptr_param<uint64_t>(l, 0);
  const uint64_t *acc = ptr_param<const uint64_t>(l, 1);
  const uint64_t n = param<uint64_t>(l, 2);
  grid_stride(l, bx, n, [&](uint64_t i) { state[i] = state[i] * WL_LCG_MUL + acc[i]; });
}

// ---------------------------------------------------------------------------------------- vmm-grow

void vmm_fill(const cudasim_launch *l, uint32_t bx, uint32_t, uint32_t, void *) {
  expect(l, 4, "wl_vmm_fill");
  uint64_t *p = ptr_param<uint64_t>(l, 0);
  const uint64_t n = param<uint64_t>(l, 1), seed = param<uint64_t>(l, 2), base = param<uint64_t>(l, 3);
  grid_stride(l, bx, n, [&](uint64_t i) { p[i] = wl_pattern(seed, base + i); });
}

void vmm_update(const cudasim_launch *l, uint32_t bx, uint32_t, uint32_t, void *) {
  expect(l, 3, "wl_vmm_update");
  uint64_t *p = ptr_param<uint64_t>(l, 0);
  const uint64_t n = param<uint64_t>(l, 1), step = param<uint64_t>(l, 2);
  grid_stride(l, bx, n, [&](uint64_t i) { p[i] = wl_lcg_step(p[i], step, i); });
}

// --------------------------------------------------------------------------------------- ptr-chase

void chase_fill(const cudasim_launch *l, uint32_t bx, uint32_t by, uint32_t, void *) {
  expect(l, 2, "wl_chase_fill");
  const wl_chase_entry e = ptr_param<const wl_chase_entry>(l, 0)[by];
  const uint64_t seed = param<uint64_t>(l, 1);
  uint64_t *p = reinterpret_cast<uint64_t *>(static_cast<uintptr_t>(e.ptr));
  grid_stride(l, bx, e.len, [&](uint64_t i) { p[i] = wl_pattern(seed ^ e.id, i); });
}

void chase_step(const cudasim_launch *l, uint32_t bx, uint32_t, uint32_t, void *) {
  expect(l, 5, "wl_chase_step");
  const wl_chase_entry *table = ptr_param<const wl_chase_entry>(l, 0);
  const uint64_t nbuf = param<uint64_t>(l, 1), walkers = param<uint64_t>(l, 2);
  const uint64_t hops = param<uint64_t>(l, 3), step = param<uint64_t>(l, 4);
  const uint64_t rd = (step & 1) * nbuf, wr = nbuf - rd;
  grid_stride(l, bx, walkers, [&](uint64_t w) {
    uint64_t s = wl_chase_seed(step, w);
    for (uint64_t h = 0; h < hops; ++h) {
      const wl_chase_entry re = table[rd + s % nbuf];
      const uint64_t v = reinterpret_cast<const uint64_t *>(static_cast<uintptr_t>(re.ptr))[(s >> 17) % re.len];
      s = wl_mix64(s ^ v);
      const wl_chase_entry we = table[wr + s % nbuf];
      atomic_add(reinterpret_cast<uint64_t *>(static_cast<uintptr_t>(we.ptr)) + (s >> 23) % we.len, v ^ s);
    }
  });
}

void chase_permute(const cudasim_launch *l, uint32_t bx, uint32_t, uint32_t, void *) {
  expect(l, 3, "wl_chase_permute");
  if (bx != 0) return;
  wl_chase_entry *table = ptr_param<wl_chase_entry>(l, 0);
  const uint64_t n = param<uint64_t>(l, 1), step = param<uint64_t>(l, 2);
  for (uint64_t i = n - 1; i > 0; --i) std::swap(table[i], table[wl_chase_pick(step, i)]);
}

void chase_digest(const cudasim_launch *l, uint32_t bx, uint32_t by, uint32_t, void *) {
  expect(l, 2, "wl_chase_digest");
  const wl_chase_entry e = ptr_param<const wl_chase_entry>(l, 0)[by];
  const uint64_t *p = reinterpret_cast<const uint64_t *>(static_cast<uintptr_t>(e.ptr));
  uint64_t s = 0;
  grid_stride(l, bx, e.len, [&](uint64_t i) { s += wl_digest_term(p[i], i); });
  atomic_add(ptr_param<uint64_t>(l, 1) + e.id, s);
}

struct Binding {
  const char *entry;
  cudasim_block_fn fn;
};

constexpr Binding kBindings[] = {
    {"wl_digest", digest},
    {"wl_counter_fill", counter_fill},
    {"wl_counter_verify", counter_verify},
    {"wl_counter_step", counter_step},
    {"wl_streams_transform", streams_transform},
    {"wl_streams_accumulate", streams_accumulate},
    {"wl_streams_fold", streams_fold},
    {"wl_vmm_fill", vmm_fill},
    {"wl_vmm_update", vmm_update},
    {"wl_chase_fill", chase_fill},
    {"wl_chase_step", chase_step},
    {"wl_chase_permute", chase_permute},
    {"wl_chase_digest", chase_digest},
};

}  // namespace
}  // namespace phos::workloads::sim

// Registers every binding; returns 0, or the first error register_kernel gave (the rest are still tried).
extern "C" __attribute__((visibility("default"))) int cudasim_plugin_register(const cudasim_host_api *api) {
  if (api == nullptr || api->size < sizeof(cudasim_host_api) || api->abi_version != CUDASIM_ABI_VERSION) {
    std::fprintf(stderr, "workloads-sim: cudasim plugin ABI %u not supported (built for %u)\n",
                 api ? api->abi_version : 0u, CUDASIM_ABI_VERSION);
    return -1;
  }
  int first = 0;
  for (const auto &b : phos::workloads::sim::kBindings) {
    const int rc = api->register_kernel(b.entry, b.fn, 0);
    if (rc != 0) {
      std::fprintf(stderr, "workloads-sim: register %s failed (%d)\n", b.entry, rc);
      if (first == 0) first = rc;
    }
  }
  return first;
}
