/* gpu-probe: prints one JSON object describing the CUDA driver the loader finds (NVIDIA's or cudasim):
 * driver version, whether the process checkpoint API is exported, and each device with its memory.
 * `phos doctor` runs it; it dlopens libcuda.so.1 itself so it builds and runs on machines without one. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <cuda.h>

typedef CUresult (*init_fn)(unsigned);
typedef CUresult (*ver_fn)(int *);
typedef CUresult (*count_fn)(int *);
typedef CUresult (*dev_fn)(CUdevice *, int);
typedef CUresult (*name_fn)(char *, int, CUdevice);
typedef CUresult (*uuid_fn)(CUuuid *, CUdevice);
typedef CUresult (*total_fn)(size_t *, CUdevice);
typedef CUresult (*retain_fn)(CUcontext *, CUdevice);
typedef CUresult (*release_fn)(CUdevice);
typedef CUresult (*setcur_fn)(CUcontext);
typedef CUresult (*info_fn)(size_t *, size_t *);

static void print_json_string(const char *s) {
  putchar('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') printf("\\%c", *s);
    else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
    else putchar(*s);
  }
  putchar('"');
}

static void fail(const char *what, const char *detail) {
  printf("{\"ok\":false,\"error\":");
  print_json_string(what);
  printf(",\"detail\":");
  print_json_string(detail ? detail : "");
  printf("}\n");
}

#define SYM(type, name) type name = (type)dlsym(lib, #name)

int main(void) {
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) { fail("libcuda.so.1 not found", dlerror()); return 0; }
  SYM(init_fn, cuInit); SYM(ver_fn, cuDriverGetVersion); SYM(count_fn, cuDeviceGetCount);
  SYM(dev_fn, cuDeviceGet); SYM(name_fn, cuDeviceGetName); SYM(uuid_fn, cuDeviceGetUuid_v2);
  SYM(total_fn, cuDeviceTotalMem_v2); SYM(retain_fn, cuDevicePrimaryCtxRetain);
  SYM(release_fn, cuDevicePrimaryCtxRelease_v2); SYM(setcur_fn, cuCtxSetCurrent); SYM(info_fn, cuMemGetInfo_v2);
  if (!cuInit || !cuDriverGetVersion || !cuDeviceGetCount || !cuDeviceGet || !cuDeviceGetName) { fail("libcuda.so.1 lacks basic entry points", ""); return 0; }
  Dl_info where = {0};
  dladdr((void *)cuInit, &where);
  int version = 0;
  cuDriverGetVersion(&version);
  CUresult rc = cuInit(0);
  if (rc != CUDA_SUCCESS) { char d[64]; snprintf(d, sizeof d, "cuInit returned %d", (int)rc); fail("driver did not initialise", d); return 0; }
  int checkpoint_api = dlsym(lib, "cuCheckpointProcessLock") && dlsym(lib, "cuCheckpointProcessCheckpoint") &&
                       dlsym(lib, "cuCheckpointProcessRestore") && dlsym(lib, "cuCheckpointProcessUnlock");
  int n = 0;
  cuDeviceGetCount(&n);
  printf("{\"ok\":true,\"library\":");
  print_json_string(where.dli_fname ? where.dli_fname : "?");
  printf(",\"driverVersion\":%d,\"checkpointApi\":%s,\"devices\":[", version, checkpoint_api ? "true" : "false");
  for (int i = 0; i < n; i++) {
    CUdevice dev; char name[256] = "?"; CUuuid uuid; memset(&uuid, 0, sizeof uuid);
    size_t total = 0, freeb = 0, totalb = 0; CUcontext ctx = NULL;
    cuDeviceGet(&dev, i);
    cuDeviceGetName(name, sizeof name, dev);
    if (cuDeviceGetUuid_v2) cuDeviceGetUuid_v2(&uuid, dev);
    if (cuDeviceTotalMem_v2) cuDeviceTotalMem_v2(&total, dev);
    if (cuDevicePrimaryCtxRetain && cuCtxSetCurrent && cuMemGetInfo_v2 && cuDevicePrimaryCtxRetain(&ctx, dev) == CUDA_SUCCESS) {
      cuCtxSetCurrent(ctx);
      cuMemGetInfo_v2(&freeb, &totalb);
      cuCtxSetCurrent(NULL);
      if (cuDevicePrimaryCtxRelease_v2) cuDevicePrimaryCtxRelease_v2(dev);
    }
    printf("%s{\"index\":%d,\"name\":", i ? "," : "", i);
    print_json_string(name);
    printf(",\"uuid\":\"GPU-");
    for (int b = 0; b < 16; b++) printf("%02x%s", (unsigned char)uuid.bytes[b], (b == 3 || b == 5 || b == 7 || b == 9) ? "-" : "");
    printf("\",\"totalBytes\":%zu,\"freeBytes\":%zu}", total, freeb);
  }
  printf("]}\n");
  return 0;
}
