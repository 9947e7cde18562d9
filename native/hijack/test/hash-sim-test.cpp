// The embedded helper PTX run through whichever libcuda.so.1 is loaded (cudasim's CPU plugin in CI,
// the GPU on the H200) must reproduce the shared vectors bit for bit; the compare kernel must flag
// exactly the chunks whose digest moved.
#include <cuda.h>

#include <vector>

#include "check.h"
#include "chunk-hash.h"
#include "vectors.h"

namespace phos::hijack { extern const char kChunkHashPtx[]; }

#define CK(x) do { CUresult r_ = (x); if (r_ != CUDA_SUCCESS) { std::printf("%s = %d\n", #x, (int)r_); return 1; } } while (0)

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  auto vs = load_vectors(argv[1]);
  CHECK(!vs.empty());
  CK(cuInit(0));
  CUdevice dev;
  CK(cuDeviceGet(&dev, 0));
  CUcontext ctx;
  CK(cuDevicePrimaryCtxRetain(&ctx, dev));
  CK(cuCtxSetCurrent(ctx));
  CUmodule mod;
  CK(cuModuleLoadData(&mod, phos::hijack::kChunkHashPtx));
  CUfunction fh, fc;
  CK(cuModuleGetFunction(&fh, mod, PHOS_CHUNK_HASH_ENTRY));
  CK(cuModuleGetFunction(&fc, mod, PHOS_CHUNK_COMPARE_ENTRY));
  CUdeviceptr d_idx, d_hash, d_prev, d_ptrw, d_changed;
  CK(cuMemAlloc(&d_idx, 64));
  CK(cuMemAlloc(&d_hash, 64));
  CK(cuMemAlloc(&d_prev, 64));
  CK(cuMemAlloc(&d_ptrw, 64));
  CK(cuMemAlloc(&d_changed, 64));
  unsigned int zero = 0;
  CK(cuMemcpyHtoD(d_idx, &zero, 4));
  for (auto& hv : vs) {
    std::vector<uint64_t> w(hv.words);
    fill_vector(hv, w.data());
    CUdeviceptr d;
    CK(cuMemAlloc(&d, hv.words * 8));
    CK(cuMemcpyHtoD(d, w.data(), hv.words * 8));
    unsigned long long base = d, cb = hv.words * 8, lo = 0x600000000000ull, hi = lo + (1ull << 40);
    unsigned int n = 1;
    void* p[] = {&base, &d_idx, &n, &cb, &lo, &hi, &d_hash, &d_ptrw};
    CK(cuLaunchKernel(fh, 1, 1, 1, PHOS_CHUNK_HASH_THREADS, 1, 1, 0, nullptr, p, nullptr));
    CK(cuCtxSynchronize());
    uint64_t h = 0;
    uint32_t pw = 0, want_pw = 0;
    CK(cuMemcpyDtoH(&h, d_hash, 8));
    CK(cuMemcpyDtoH(&pw, d_ptrw, 4));
    phos_chunk_hash_ref(w.data(), hv.words, lo, hi, &want_pw);
    if (h != hv.expected) std::printf("vector %s: device %016llx want %016llx\n", hv.name.c_str(), (unsigned long long)h, (unsigned long long)hv.expected);
    CHECK(h == hv.expected);
    CHECK(pw == want_pw);
    CK(cuMemFree(d));
  }
  // Compare: slots 0..3, prev differs at 1 and 3.
  uint32_t idx[4] = {0, 1, 2, 3};
  uint64_t hashes[4] = {10, 11, 12, 13}, prev[4] = {10, 99, 12, 98};
  CK(cuMemcpyHtoD(d_idx, idx, sizeof idx));
  CK(cuMemcpyHtoD(d_hash, hashes, sizeof hashes));
  CK(cuMemcpyHtoD(d_prev, prev, sizeof prev));
  unsigned int n = 4;
  void* cp[] = {&d_idx, &n, &d_hash, &d_prev, &d_changed};
  CK(cuLaunchKernel(fc, 1, 1, 1, PHOS_CHUNK_COMPARE_THREADS, 1, 1, 0, nullptr, cp, nullptr));
  CK(cuCtxSynchronize());
  uint8_t changed[4];
  uint64_t prev_after[4];
  CK(cuMemcpyDtoH(changed, d_changed, 4));
  CK(cuMemcpyDtoH(prev_after, d_prev, sizeof prev_after));
  CHECK(!changed[0] && changed[1] && !changed[2] && changed[3]);
  CHECK(prev_after[1] == 11 && prev_after[3] == 13);
  return phos_test::finish("hash-sim-test");
}
