/* Target for the driver checkpoint test (pccl-driver-ckpt.test.ts): holds 1 MiB of device memory with a
 * known pattern, prints "ready", then for each stdin line "check" copies it back and prints "ok" or
 * "BAD" (a CUDA call, so it blocks while the process is locked). Exits 0 at EOF. */
#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N (1u << 20)
#define CK(x)                                  \
  do {                                         \
    CUresult e_ = (x);                         \
    if (e_ != CUDA_SUCCESS) {                  \
      printf("FAIL %s %d\n", #x, (int)e_);     \
      return 1;                                \
    }                                          \
  } while (0)

int main(void) {
  CUdevice dev;
  CUcontext ctx;
  CUdeviceptr d;
  static unsigned char want[N], got[N];
  for (unsigned i = 0; i < N; ++i) want[i] = (unsigned char)(i * 13 + 1);
  CK(cuInit(0));
  CK(cuDeviceGet(&dev, 0));
  CK(cuDevicePrimaryCtxRetain(&ctx, dev));
  CK(cuCtxSetCurrent(ctx));
  CK(cuMemAlloc(&d, N));
  CK(cuMemcpyHtoD(d, want, N));
  printf("ready\n");
  fflush(stdout);
  char line[64];
  while (fgets(line, sizeof line, stdin)) {
    if (strncmp(line, "check", 5) != 0) continue;
    memset(got, 0, N);
    CK(cuMemcpyDtoH(got, d, N));
    printf(memcmp(got, want, N) == 0 ? "ok\n" : "BAD\n");
    fflush(stdout);
  }
  CK(cuMemFree(d));
  return 0;
}
