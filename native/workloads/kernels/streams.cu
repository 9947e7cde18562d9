/* streams' kernels: a per-stream transform, the accumulation of every stream's result on one stream,
 * and the fold into persistent state. CPU twins in sim-kernels.cpp; host side in src/streams.cpp. */
#include "common.cuh"

/* out[i] = wl_mix64(in[i] ^ key) + i */
extern "C" __global__ void wl_streams_transform(const uint64_t *in, uint64_t *out, uint64_t n, uint64_t key) {
  WL_GRID_STRIDE(i, n) out[i] = wl_mix64(in[i] ^ key) + i;
}

/* acc[i] += wl_mix64(src[i] + key) */
extern "C" __global__ void wl_streams_accumulate(uint64_t *acc, const uint64_t *src, uint64_t n, uint64_t key) {
  WL_GRID_STRIDE(i, n) acc[i] += wl_mix64(src[i] + key);
}

/* state[i] = state[i] * WL_LCG_MUL + acc[i] */
extern "C" __global__ void wl_streams_fold(uint64_t *state, const uint64_t *acc, uint64_t n) {
  WL_GRID_STRIDE(i, n) state[i] = state[i] * WL_LCG_MUL + acc[i];
}
