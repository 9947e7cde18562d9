// cudasim plugin for launch-bench's empty kernel (local runs of test/gpu/libphos.sh on cudasim only; the
// GPU runs the PTX). Built by the script as a MODULE and named in PHOS_SIM_KERNELS.
#include <phos/cudasim.h>

namespace {
void empty_block(const cudasim_launch*, uint32_t, uint32_t, uint32_t, void*) {}
}  // namespace

extern "C" __attribute__((visibility("default"))) int cudasim_plugin_register(const cudasim_host_api* api) {
  return api->register_kernel("phos_bench_empty", empty_block, 0);
}
