// A driver-API program (linked with -lcuda) checking what libphos must keep true for the app: pointers
// from the region, exact cuMemGetAddressRange / pointer attributes for sub-allocations, data integrity,
// the app's own VMM calls, cuMemGetInfo sanity, and an entry point libphos does not wrap.
// Usage: app-test [--expect-phos | --phos-passthrough] | app-test --agent (child of agent-test).
// --expect-phos: libphos is preloaded and serves from its region; --phos-passthrough: preloaded but
// disabled or without a region (everything from the driver).
#include <cuda.h>
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <phos/hijack.h>

#include "check.h"

// The region libphos was told to use (tests under ASan move it: ASan's allocator owns 0x600000000000).
static uint64_t va_base() {
  const char* s = getenv("PHOS_VA_BASE");
  return s && *s ? strtoull(s, nullptr, 16) : 0x600000000000ull;
}

#define CK(x) do { CUresult r_ = (x); if (r_ != CUDA_SUCCESS) { std::printf("%s = %d\n", #x, (int)r_); return 1; } } while (0)

static int agent_mode() {
  CUdeviceptr a, b;
  CK(cuMemAlloc(&a, 4u << 20));  // two whole chunks
  CK(cuMemAlloc(&b, 4096));      // shares a chunk with nothing else yet
  std::vector<uint8_t> buf(4u << 20, 0x5a);
  CK(cuMemcpyHtoD(a, buf.data(), buf.size()));
  CK(cuMemcpyHtoD(b, buf.data(), 4096));
  std::printf("ready a=%llx b=%llx\n", (unsigned long long)a, (unsigned long long)b);
  std::fflush(stdout);
  char line[64];
  while (std::fgets(line, sizeof line, stdin)) {
    if (!strncmp(line, "touch", 5)) {
      uint64_t v = 42;
      CK(cuMemcpyHtoD(b + 8, &v, 8));
      std::printf("touched\n");
      std::fflush(stdout);
    } else if (!strncmp(line, "exit", 4)) {
      break;
    }
  }
  CK(cuMemFree(a));
  CK(cuMemFree(b));
  return 0;
}

int main(int argc, char** argv) {
  CK(cuInit(0));
  CUdevice dev;
  CK(cuDeviceGet(&dev, 0));
  CUcontext ctx;
  CK(cuDevicePrimaryCtxRetain(&ctx, dev));
  CK(cuCtxSetCurrent(ctx));
  if (argc > 1 && !strcmp(argv[1], "--agent")) return agent_mode();
  bool phos = argc > 1 && !strcmp(argv[1], "--expect-phos");
  bool loaded = phos || (argc > 1 && !strcmp(argv[1], "--phos-passthrough"));
  auto stats_fn = reinterpret_cast<int (*)(phos_hijack_stats*)>(dlsym(RTLD_DEFAULT, "phos_hijack_get_stats"));
  CHECK((stats_fn != nullptr) == loaded);

  // An entry point libphos does not wrap.
  char name[128] = {0};
  CK(cuDeviceGetName(name, sizeof name, dev));
  CHECK(name[0] != 0);
  unsigned ver = 0;
  CK(cuCtxGetApiVersion(ctx, &ver));

  size_t free0, total0;
  CK(cuMemGetInfo(&free0, &total0));
  CHECK(free0 <= total0);

  // Sub-allocations: distinct, aligned, data intact, exact ranges.
  std::vector<CUdeviceptr> ps;
  const size_t sizes[] = {1, 100, 256, 4000, 65536, 1 << 20, (1 << 20) + 1, 3 << 20, 70 << 20};
  for (size_t s : sizes) {
    CUdeviceptr p;
    CK(cuMemAlloc(&p, s));
    CHECK(p % 256 == 0);
    if (phos) CHECK(p >= va_base() && p < va_base() + (64ull << 30));
    CUdeviceptr base = 0;
    size_t size = 0;
    CK(cuMemGetAddressRange(&base, &size, p + s / 2));
    CHECK(base == p && size == s);
    CUdeviceptr start = 0;
    size_t rsize = 0;
    CK(cuPointerGetAttribute(&start, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, p + s - 1));
    CK(cuPointerGetAttribute(&rsize, CU_POINTER_ATTRIBUTE_RANGE_SIZE, p));
    CHECK(start == p && rsize == s);
    unsigned int mt = 0;
    CK(cuPointerGetAttribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, p));
    CHECK(mt == CU_MEMORYTYPE_DEVICE);
    ps.push_back(p);
  }
  for (size_t i = 0; i < ps.size(); ++i) {
    std::vector<uint8_t> in(sizes[i]), out(sizes[i]);
    for (size_t k = 0; k < in.size(); ++k) in[k] = static_cast<uint8_t>(k * 31 + i);
    CK(cuMemcpyHtoD(ps[i], in.data(), in.size()));
    CK(cuMemcpyDtoH(out.data(), ps[i], out.size()));
    CHECK(in == out);
  }
  CUpointer_attribute attrs[2] = {CU_POINTER_ATTRIBUTE_RANGE_START_ADDR, CU_POINTER_ATTRIBUTE_RANGE_SIZE};
  CUdeviceptr s0 = 0;
  size_t s1 = 0;
  void* data[2] = {&s0, &s1};
  CK(cuPointerGetAttributes(2, attrs, data, ps[3] + 10));
  CHECK(s0 == ps[3] && s1 == sizes[3]);
  size_t pitch = 0;
  CUdeviceptr pp;
  CK(cuMemAllocPitch(&pp, &pitch, 1000, 7, 4));
  CHECK(pitch >= 1000);
  CK(cuMemFree(pp));
  if (stats_fn) {
    phos_hijack_stats st{};
    st.size = sizeof st;
    stats_fn(&st);
    if (phos) CHECK(st.region_ok == 1 && st.allocations == ps.size() && st.slabs >= 2);
    else CHECK(st.region_ok == 0 && st.allocations == 0 && st.slabs == 0);
    std::printf("stats: slabs=%u slab_bytes=%llu alloc_bytes=%llu unexplained=%lld chunks=%u\n", st.slabs,
                (unsigned long long)st.slab_bytes, (unsigned long long)st.alloc_bytes,
                (long long)st.unexplained_bytes, st.chunks_present);
  }
  for (CUdeviceptr p : ps) CK(cuMemFree(p));
  CHECK(cuMemFree(ps[0]) != CUDA_SUCCESS);  // double free is an error, as with the driver

  // The app's own VMM: reserve, create, map, access, use, unmap, release, free.
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = dev;
  size_t gran = 0;
  CK(cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
  size_t sz = 4 * gran;
  CUdeviceptr va;
  CK(cuMemAddressReserve(&va, 2 * sz, 0, 0, 0));
  if (phos) CHECK(va >= va_base() && va < va_base() + (64ull << 30));
  CUmemGenericAllocationHandle h;
  CK(cuMemCreate(&h, sz, &prop, 0));
  CK(cuMemMap(va, sz, 0, h, 0));
  CUmemAccessDesc acc{};
  acc.location = prop.location;
  acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  CK(cuMemSetAccess(va, sz, &acc, 1));
  std::vector<uint8_t> in(sz, 0x3c), out(sz);
  CK(cuMemcpyHtoD(va, in.data(), sz));
  CK(cuMemcpyDtoH(out.data(), va, sz));
  CHECK(in == out);
  CK(cuMemUnmap(va, sz));
  CK(cuMemRelease(h));
  CK(cuMemAddressFree(va, 2 * sz));
  return phos_test::finish("app-test");
}
