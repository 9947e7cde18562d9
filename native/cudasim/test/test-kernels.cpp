// CPU kernels for cudasim's own tests (entry names prefixed cudasim_test_ so they never clash with
// the workloads' plugin).
#include <cstring>

#include "phos/cudasim.h"

namespace {

// cudasim_test_add(int *data, unsigned n, int value): data[i] += value.
void add(const cudasim_launch *l, uint32_t bx, uint32_t, uint32_t, void *) {
  // CUDASIM_PARAM(l, i, T*) would read as const T*: pointers are read as uintptr_t.
  auto *data = reinterpret_cast<int *>(CUDASIM_PARAM(l, 0, uintptr_t));
  uint32_t n = CUDASIM_PARAM(l, 1, uint32_t);
  int value = CUDASIM_PARAM(l, 2, int);
  for (uint32_t t = 0; t < l->block[0]; t++) {
    uint32_t i = bx * l->block[0] + t;
    if (i < n) data[i] += value;
  }
}

// cudasim_test_echo(int, void *out, struct24, char, double *, float4): block 0 copies the packed
// parameter buffer to out, so the test sees exactly what a kernel would read.
void echo(const cudasim_launch *l, uint32_t bx, uint32_t, uint32_t, void *shared) {
  if (bx != 0) return;
  auto *out = reinterpret_cast<void *>(CUDASIM_PARAM(l, 1, uintptr_t));
  uint32_t end = l->param_offset[l->num_params - 1] + l->param_size[l->num_params - 1];
  memcpy(out, l->params, end);
  memcpy(static_cast<char *>(out) + 128, shared, 4);  // shared memory arrives zeroed
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int cudasim_plugin_register(const cudasim_host_api *api) {
  if (api->abi_version != CUDASIM_ABI_VERSION) return -1;
  if (api->register_kernel("cudasim_test_add", add, 0)) return -1;
  return api->register_kernel("cudasim_test_echo", echo, 1024);
}
