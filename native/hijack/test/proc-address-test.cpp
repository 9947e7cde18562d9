// cuGetProcAddress translation as cudart does it: dlopen("libcuda.so.1"), dlsym the 5-argument entry,
// probe with the empty name, then ask for wrapped and unwrapped symbols with flags 0 and 2.
// Usage: proc-address-test [--expect-phos]. Without the flag (no LD_PRELOAD) it checks plain driver
// behaviour, so the same expectations hold with and without libphos.
#include <cuda.h>
#include <dlfcn.h>

#include <cstring>

#include "check.h"

#undef cuGetProcAddress
typedef CUresult (*GetProc5)(const char*, void**, int, cuuint64_t, CUdriverProcAddressQueryResult*);
typedef CUresult (*GetProc4)(const char*, void**, int, cuuint64_t);
typedef CUresult (*InitFn)(unsigned);

static bool in_phos(void* p) {
  Dl_info i;
  return p && dladdr(p, &i) && i.dli_fname && strstr(i.dli_fname, "libphos");
}

int main(int argc, char** argv) {
  bool phos = argc > 1 && !strcmp(argv[1], "--expect-phos");
  void* h = dlopen("libcuda.so.1", RTLD_NOW);
  CHECK(h != nullptr);
  if (!h) return phos_test::finish("proc-address-test");
  auto gpa = reinterpret_cast<GetProc5>(dlsym(h, "cuGetProcAddress_v2"));
  CHECK(gpa != nullptr);
  CHECK(in_phos(reinterpret_cast<void*>(gpa)) == phos);
  // RTLD_NEXT from the program still finds libc (relative to the caller, not libphos).
  CHECK(dlsym(RTLD_NEXT, "malloc") != nullptr);
  CHECK(dlsym(h, "cuNoSuchSymbol") == nullptr);

  // The empty-name probe is passed straight through: cudart compares it with CUDA_ERROR_STUB_LIBRARY.
  void* p = nullptr;
  CUresult probe = gpa("", &p, 0, 0, nullptr);
  CHECK(probe != CUDA_ERROR_STUB_LIBRARY);

  void* initp = nullptr;
  CHECK(gpa("cuInit", &initp, 2000, 0, nullptr) == CUDA_SUCCESS && initp);
  CHECK(reinterpret_cast<InitFn>(initp)(0) == CUDA_SUCCESS);

  CUdriverProcAddressQueryResult st;
  void* alloc0 = nullptr;
  CHECK(gpa("cuMemAlloc", &alloc0, 3020, 0, &st) == CUDA_SUCCESS && st == CU_GET_PROC_ADDRESS_SUCCESS);
  CHECK(in_phos(alloc0) == phos);
  if (phos) CHECK(alloc0 == dlsym(RTLD_DEFAULT, "cuMemAlloc_v2"));
  void* alloc2 = nullptr;
  CHECK(gpa("cuMemAlloc", &alloc2, 3020, 2, &st) == CUDA_SUCCESS && alloc2 == alloc0);

  void* lk0 = nullptr;
  void* lk2 = nullptr;
  CHECK(gpa("cuLaunchKernel", &lk0, 4000, 0, &st) == CUDA_SUCCESS && lk0);
  CHECK(gpa("cuLaunchKernel", &lk2, 7000, 2, &st) == CUDA_SUCCESS && lk2);
  CHECK(in_phos(lk0) == phos && in_phos(lk2) == phos);
  CHECK(lk0 != lk2);  // the per-thread variant is a distinct entry point
  CHECK(lk2 == dlsym(h, "cuLaunchKernel_ptsz"));
  CHECK(lk0 == dlsym(h, "cuLaunchKernel"));

  // Unwrapped: passes through to the driver's own function.
  void* name = nullptr;
  CHECK(gpa("cuDeviceGetName", &name, 2000, 0, &st) == CUDA_SUCCESS && name && !in_phos(name));
  // Unknown: SUCCESS, NULL, SYMBOL_NOT_FOUND.
  void* unk = reinterpret_cast<void*>(0x1);
  st = CU_GET_PROC_ADDRESS_SUCCESS;
  CHECK(gpa("cuNoSuchSymbol", &unk, 13000, 0, &st) == CUDA_SUCCESS && unk == nullptr &&
        st == CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);

  // Self-lookup: 4-argument ABI below 12000, 5-argument at and above.
  void* self4 = nullptr;
  void* self5 = nullptr;
  CHECK(gpa("cuGetProcAddress", &self4, 11030, 0, &st) == CUDA_SUCCESS && self4);
  CHECK(gpa("cuGetProcAddress", &self5, 12000, 0, &st) == CUDA_SUCCESS && self5);
  CHECK(self5 == reinterpret_cast<void*>(gpa));
  CHECK(self4 != self5 && in_phos(self4) == phos);
  void* via4 = nullptr;
  CHECK(reinterpret_cast<GetProc4>(self4)("cuMemAlloc", &via4, 3020, 0) == CUDA_SUCCESS && via4 == alloc0);
  return phos_test::finish("proc-address-test");
}
