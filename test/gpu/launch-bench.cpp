// Host-side submit cost of cuLaunchKernel: N launches of an empty kernel (two pointer parameters into
// cuMemAlloc'd buffers and one int, so an armed libphos has real words to scan), timed with
// CLOCK_MONOTONIC around the submit loop only (the stream is drained outside the timed region), median
// over repeats. Driver API only; linked against a libcuda.so.1 for the soname (no RPATH), so the
// loader picks NVIDIA's driver or cudasim at run time.
//
// Variants, interleaved in rotating order within each repeat so drift hits all of them alike:
//   real     the driver's own cuLaunchKernel, found by walking libcuda.so's dynamic symbol table
//            (dlsym cannot give it under libphos: the dlsym hook answers with the wrapper)
//   plt      cuLaunchKernel as the loader bound it: libphos's wrapper when preloaded, else the driver
//   armed    the same with launch tracking armed (phos_hijack_arm, only when libphos is loaded)
// Output (stdout, one line each): `info ...`, `launch variant=V ns_median=... ns_p10=... ns_p90=...
// repeats=R batch=B`, and `delta disarmed_ns=... armed_ns=...` (plt − real and armed − real, medians of
// per-repeat differences). Exit status 0, 2 bad arguments, 3 a driver call failed.
#include <cuda.h>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

namespace {

const char kPtx[] = R"(
.version 8.0
.target sm_90
.address_size 64
.visible .entry phos_bench_empty(
  .param .u64 phos_bench_empty_param_0,
  .param .u64 phos_bench_empty_param_1,
  .param .u32 phos_bench_empty_param_2
)
{
  ret;
}
)";

#define CHECK(call)                                                                          \
  do {                                                                                       \
    CUresult r_ = (call);                                                                    \
    if (r_ != CUDA_SUCCESS) {                                                                \
      const char* n_ = nullptr;                                                              \
      cuGetErrorName(r_, &n_);                                                               \
      fprintf(stderr, "launch-bench: error: %s failed: %s (%d) at %s:%d\n", #call, n_ ? n_ : "?", \
              (int)r_, __FILE__, __LINE__);                                                  \
      exit(3);                                                                               \
    }                                                                                        \
  } while (0)

using LaunchFn = CUresult (*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                              CUstream, void**, void**);

// ---- the driver's own symbol, from libcuda.so's ELF dynamic symbol table ----------------------------
struct Lookup {
  const char* name;
  void* found;
  std::string object;
};

uintptr_t fix(uintptr_t a, uintptr_t base) { return a < base ? a + base : a; }

int find_cb(dl_phdr_info* info, size_t, void* data) {
  auto* q = static_cast<Lookup*>(data);
  if (q->found || !info->dlpi_name || !strstr(info->dlpi_name, "libcuda.so")) return 0;
  const ElfW(Dyn)* dyn = nullptr;
  for (int i = 0; i < info->dlpi_phnum; ++i)
    if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
      dyn = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
  if (!dyn) return 0;
  const ElfW(Sym)* symtab = nullptr;
  const char* strtab = nullptr;
  const uint32_t* hash = nullptr;
  const uint32_t* gnu = nullptr;
  for (const ElfW(Dyn)* d = dyn; d->d_tag != DT_NULL; ++d) {
    uintptr_t v = fix(d->d_un.d_ptr, info->dlpi_addr);
    if (d->d_tag == DT_SYMTAB) symtab = reinterpret_cast<const ElfW(Sym)*>(v);
    else if (d->d_tag == DT_STRTAB) strtab = reinterpret_cast<const char*>(v);
    else if (d->d_tag == DT_HASH) hash = reinterpret_cast<const uint32_t*>(v);
    else if (d->d_tag == DT_GNU_HASH) gnu = reinterpret_cast<const uint32_t*>(v);
  }
  if (!symtab || !strtab) return 0;
  uint32_t count = 0;
  if (hash) {
    count = hash[1];
  } else if (gnu) {
    uint32_t nbuckets = gnu[0], symoffset = gnu[1], bloom_size = gnu[2];
    const auto* bloom = reinterpret_cast<const ElfW(Addr)*>(gnu + 4);
    const auto* buckets = reinterpret_cast<const uint32_t*>(bloom + bloom_size);
    const uint32_t* chain = buckets + nbuckets;
    uint32_t last = 0;
    for (uint32_t b = 0; b < nbuckets; ++b) last = std::max(last, buckets[b]);
    if (last >= symoffset) {
      while (!(chain[last - symoffset] & 1)) ++last;
      count = last + 1;
    } else {
      count = symoffset;
    }
  }
  for (uint32_t i = 0; i < count; ++i) {
    const ElfW(Sym)& s = symtab[i];
    if (s.st_shndx == SHN_UNDEF || s.st_value == 0 || ELF64_ST_TYPE(s.st_info) != STT_FUNC) continue;
    if (strcmp(strtab + s.st_name, q->name) == 0) {
      q->found = reinterpret_cast<void*>(info->dlpi_addr + s.st_value);
      q->object = info->dlpi_name;
      return 1;
    }
  }
  return 0;
}

void* driver_symbol(const char* name, std::string* object) {
  Lookup q{name, nullptr, {}};
  dl_iterate_phdr(find_cb, &q);
  if (object) *object = q.object;
  return q.found;
}

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

unsigned long arg(int argc, char** argv, const char* name, unsigned long def, bool zero_ok = false) {
  size_t n = strlen(name);
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], name, n) != 0) continue;
    const char* v = nullptr;
    if (argv[i][n] == '=') v = argv[i] + n + 1;
    else if (argv[i][n] == 0 && i + 1 < argc) v = argv[i + 1];
    if (!v) break;
    char* end = nullptr;
    unsigned long x = strtoul(v, &end, 0);
    if (!end || *end || (x == 0 && !zero_ok)) {
      fprintf(stderr, "launch-bench: bad value for %s: %s\n", name, v);
      exit(2);
    }
    return x;
  }
  return def;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (!strcmp(argv[i], "--help")) {
      printf("usage: launch-bench [--batch N (256)] [--repeats N (300)] [--warmup N (20)] [--device N (0)]\n");
      return 0;
    }
  unsigned long batch = arg(argc, argv, "--batch", 256);
  unsigned long repeats = arg(argc, argv, "--repeats", 300);
  unsigned long warmup = arg(argc, argv, "--warmup", 20);
  int device = static_cast<int>(arg(argc, argv, "--device", 0, true));

  CHECK(cuInit(0));
  CUdevice dev;
  CHECK(cuDeviceGet(&dev, device));
  CUcontext ctx;
  CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
  CHECK(cuCtxSetCurrent(ctx));
  int drv = 0;
  CHECK(cuDriverGetVersion(&drv));
  char name[256] = {0};
  CHECK(cuDeviceGetName(name, sizeof name - 1, dev));
  CUmodule mod;
  CHECK(cuModuleLoadData(&mod, kPtx));
  CUfunction fn;
  CHECK(cuModuleGetFunction(&fn, mod, "phos_bench_empty"));
  CUstream stream;
  CHECK(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CUdeviceptr a = 0, b = 0;
  CHECK(cuMemAlloc(&a, 4 << 20));
  CHECK(cuMemAlloc(&b, 4096));
  int n = 1024;
  void* params[] = {&a, &b, &n};

  std::string object;
  auto real = reinterpret_cast<LaunchFn>(driver_symbol("cuLaunchKernel", &object));
  LaunchFn plt = &cuLaunchKernel;
  void* proc = nullptr;
  CUdriverProcAddressQueryResult qr{};
  CHECK(cuGetProcAddress_v2("cuLaunchKernel", &proc, 12000, CU_GET_PROC_ADDRESS_DEFAULT, &qr));
  using ArmFn = int (*)(int);
  auto arm = reinterpret_cast<ArmFn>(dlsym(RTLD_DEFAULT, "phos_hijack_arm"));
  printf("device driver=%d name=%s\n", drv, name);
  printf("info libcuda=%s real=%p plt=%p proc=%p libphos=%d plt_is_real=%d proc_is_plt=%d a=0x%llx\n",
         object.empty() ? "?" : object.c_str(), reinterpret_cast<void*>(real), reinterpret_cast<void*>(plt), proc,
         arm ? 1 : 0, reinterpret_cast<void*>(real) == reinterpret_cast<void*>(plt) ? 1 : 0,
         proc == reinterpret_cast<void*>(plt) ? 1 : 0, static_cast<unsigned long long>(a));
  if (!real) {
    fprintf(stderr, "launch-bench: warning: the driver's own cuLaunchKernel was not found; using plt\n");
    real = plt;
  }
  fflush(stdout);
  int prev_armed = arm ? arm(0) : 0;  // the wrapper variant runs disarmed, whatever PHOS_ARM says

  struct Variant {
    const char* name;
    LaunchFn f;
    bool armed;
    std::vector<double> ns;
  };
  std::vector<Variant> vs;
  vs.push_back({"real", real, false, {}});
  vs.push_back({"plt", plt, false, {}});
  if (arm) vs.push_back({"armed", plt, true, {}});

  for (unsigned long r = 0; r < warmup + repeats; ++r) {
    for (size_t k = 0; k < vs.size(); ++k) {
      Variant& v = vs[(k + r) % vs.size()];
      if (arm) arm(v.armed ? 1 : 0);
      CHECK(cuStreamSynchronize(stream));
      LaunchFn f = v.f;
      uint64_t t0 = now_ns();
      for (unsigned long i = 0; i < batch; ++i) {
        CUresult e = f(fn, 1, 1, 1, 32, 1, 1, 0, stream, params, nullptr);
        if (e != CUDA_SUCCESS) CHECK(e);
      }
      uint64_t t1 = now_ns();
      if (r >= warmup) v.ns.push_back(static_cast<double>(t1 - t0) / static_cast<double>(batch));
    }
  }
  CHECK(cuStreamSynchronize(stream));
  if (arm) arm(prev_armed);

  for (auto& v : vs)
    printf("launch variant=%s ns_median=%.1f ns_p10=%.1f ns_p90=%.1f repeats=%lu batch=%lu\n", v.name,
           pct(v.ns, 0.5), pct(v.ns, 0.1), pct(v.ns, 0.9), repeats, batch);
  // Per-repeat differences against the driver's own function (same repeat, adjacent in time).
  std::vector<double> dd, da;
  for (size_t i = 0; i < vs[0].ns.size(); ++i) {
    dd.push_back(vs[1].ns[i] - vs[0].ns[i]);
    if (vs.size() > 2) da.push_back(vs[2].ns[i] - vs[0].ns[i]);
  }
  printf("delta disarmed_ns=%.1f disarmed_p10=%.1f disarmed_p90=%.1f", pct(dd, 0.5), pct(dd, 0.1), pct(dd, 0.9));
  if (!da.empty()) printf(" armed_ns=%.1f armed_p10=%.1f armed_p90=%.1f", pct(da, 0.5), pct(da, 0.1), pct(da, 0.9));
  printf("\n");

  CHECK(cuMemFree(a));
  CHECK(cuMemFree(b));
  CHECK(cuStreamDestroy(stream));
  CHECK(cuModuleUnload(mod));
  CHECK(cuDevicePrimaryCtxRelease(dev));
  return 0;
}
