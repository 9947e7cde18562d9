// cudasim named checks: `cudasim-test NAME` runs one (ctest runs each as cudasim.NAME), `all` runs
// every one. Checks that need a second process re-execute this binary with a child-mode name.
#include <cuda.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace {

int g_failures = 0;

#define CHECK(cond)                                                             \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);           \
      g_failures++;                                                             \
    }                                                                           \
  } while (0)

#define CK(call)                                                                \
  do {                                                                          \
    CUresult ck_r = (call);                                                     \
    if (ck_r != CUDA_SUCCESS) {                                                 \
      const char *ck_n = "?";                                                   \
      cuGetErrorName(ck_r, &ck_n);                                              \
      fprintf(stderr, "FAIL %s:%d: %s -> %s\n", __FILE__, __LINE__, #call, ck_n); \
      g_failures++;                                                             \
    }                                                                           \
  } while (0)

#define EXPECT(call, want) CHECK((call) == (want))

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

void setup() {
  CK(cuInit(0));
  CUdevice dev;
  CK(cuDeviceGet(&dev, 0));
  CUcontext ctx;
  CK(cuDevicePrimaryCtxRetain(&ctx, dev));
  CK(cuCtxSetCurrent(ctx));
}

constexpr size_t kGran = 2 << 20;

CUmemAllocationProp fd_prop() {
  CUmemAllocationProp p{};
  p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  p.location.id = 0;
  p.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  return p;
}

CUdeviceptr vmm_map(CUmemGenericAllocationHandle h, size_t size, CUdeviceptr hint = 0) {
  CUdeviceptr va = 0;
  CK(cuMemAddressReserve(&va, size, 0, hint, 0));
  CK(cuMemMap(va, size, 0, h, 0));
  CUmemAccessDesc a{};
  a.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  a.location.id = 0;
  a.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  CK(cuMemSetAccess(va, size, &a, 1));
  return va;
}

// A child process running this binary in `mode`; its stdin/stdout are pipes to us.
struct Child {
  pid_t pid = -1;
  int to = -1, from = -1;

  static Child spawn(const std::vector<std::string> &args, int keep_fd = -1) {
    int in[2], out[2];
    if (pipe(in) || pipe(out)) abort();
    Child c;
    c.pid = fork();
    if (c.pid == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      if (keep_fd >= 0) fcntl(keep_fd, F_SETFD, 0);
      std::vector<char *> argv;
      static char self[] = "/proc/self/exe";
      argv.push_back(self);
      for (auto &a : args) argv.push_back(const_cast<char *>(a.c_str()));
      argv.push_back(nullptr);
      execv(self, argv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    c.to = in[1];
    c.from = out[0];
    return c;
  }
  // Reads one line (up to '\n'), waiting at most timeout_ms.
  std::string line(int timeout_ms = 10000) {
    std::string s;
    for (char ch;;) {
      pollfd p{from, POLLIN, 0};
      if (poll(&p, 1, timeout_ms) <= 0 || read(from, &ch, 1) != 1) return s;
      if (ch == '\n') return s;
      s.push_back(ch);
    }
  }
  void say(const char *msg) {
    if (write(to, msg, strlen(msg)) < 0) abort();
  }
  int wait() {
    int st = 0;
    waitpid(pid, &st, 0);
    close(to);
    close(from);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
};

void tell_parent(const char *msg) {
  printf("%s\n", msg);
  fflush(stdout);
}

std::string wait_parent() {
  std::string s;
  for (char ch; read(0, &ch, 1) == 1 && ch != '\n';) s.push_back(ch);
  return s;
}

// ------------------------------------------------------------------------------------------------
void alloc_copy_memset() {
  setup();
  size_t free0, total;
  CK(cuMemGetInfo(&free0, &total));
  CHECK(total == (size_t{1} << 30));  // PHOS_SIM_MEM=1G from ctest
  const size_t n = 1 << 20;
  CUdeviceptr a, b;
  CK(cuMemAlloc(&a, n * 4));
  CK(cuMemAlloc(&b, n * 4));
  CHECK(a >= 0x7e0000000000ull);  // the default device VA region
  size_t free1;
  CK(cuMemGetInfo(&free1, &total));
  CHECK(free1 == free0 - 2 * n * 4);
  std::vector<uint32_t> h(n), back(n);
  for (size_t i = 0; i < n; i++) h[i] = static_cast<uint32_t>(i * 2654435761u);
  CK(cuMemcpyHtoD(a, h.data(), n * 4));
  CK(cuMemcpyDtoD(b, a, n * 4));
  CK(cuMemcpyDtoH(back.data(), b, n * 4));
  CHECK(back == h);
  CUdeviceptr base;
  size_t size;
  CK(cuMemGetAddressRange(&base, &size, a + 100));
  CHECK(base == a && size == n * 4);
  CK(cuMemsetD32(a, 0xdeadbeef, n));
  CK(cuMemsetD16(b, 0x1234, 3));
  CK(cuMemsetD8(b + 6, 0x56, 1));
  CK(cuMemcpyDtoH(back.data(), a, 16));
  CHECK(back[0] == 0xdeadbeef && back[3] == 0xdeadbeef);
  unsigned char bytes[8];
  CK(cuMemcpyDtoH(bytes, b, 8));
  CHECK(bytes[0] == 0x34 && bytes[1] == 0x12 && bytes[5] == 0x12 && bytes[6] == 0x56);
  EXPECT(cuMemsetD32(a + 2, 0, 1), CUDA_ERROR_INVALID_VALUE);           // misaligned
  EXPECT(cuMemcpyHtoD(a + n * 4 - 2, h.data(), 8), CUDA_ERROR_INVALID_VALUE);  // past the end
  EXPECT(cuMemcpyHtoD(0x1000, h.data(), 8), CUDA_ERROR_INVALID_VALUE);   // not device memory
  // Async: pageable source is staged at the call; pinned destination stays asynchronous.
  CUstream s;
  CK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
  uint32_t *pinned;
  CK(cuMemHostAlloc(reinterpret_cast<void **>(&pinned), n * 4, 0));
  std::vector<uint32_t> src(n, 7);
  CK(cuMemcpyHtoDAsync(a, src.data(), n * 4, s));
  std::fill(src.begin(), src.end(), 9);  // must not affect the copy already issued
  CK(cuMemsetD32Async(b, 5, n, s));
  CK(cuMemcpyDtoHAsync(pinned, a, n * 4, s));
  CK(cuStreamSynchronize(s));
  CHECK(pinned[0] == 7 && pinned[n - 1] == 7);
  CK(cuMemcpyDtoH(back.data(), b, 4));
  CHECK(back[0] == 5);
  CUdeviceptr pitched;
  size_t pitch;
  CK(cuMemAllocPitch(&pitched, &pitch, 100, 10, 4));
  CHECK(pitch >= 100 && pitch % 256 == 0);
  CK(cuMemsetD2D8(pitched, pitch, 0xab, 100, 10));
  CK(cuMemFree(pitched));
  std::vector<char> reg(1 << 16);
  CK(cuMemHostRegister(reg.data(), reg.size(), 0));
  EXPECT(cuMemHostRegister(reg.data(), 16, 0), CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
  CK(cuMemHostUnregister(reg.data()));
  CK(cuMemFreeHost(pinned));
  CK(cuStreamDestroy(s));
  CK(cuMemFree(a));
  CK(cuMemFree(b));
  EXPECT(cuMemFree(a + 4096), CUDA_ERROR_INVALID_VALUE);
  CK(cuMemGetInfo(&free1, &total));
  CHECK(free1 == free0);
}

void vmm_hint() {
  setup();
  size_t gran = 0;
  CUmemAllocationProp prop = fd_prop();
  CK(cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
  CHECK(gran == kGran);
  const CUdeviceptr hint = 0x200000000000ull;  // empty in plain and ASan processes alike
  const size_t one_gib = size_t{1} << 30;
  CUdeviceptr r1 = 0, r2 = 0, r3 = 0;
  CK(cuMemAddressReserve(&r1, one_gib, 0, hint, 0));
  CHECK(r1 == hint);  // empty range: honoured
  CK(cuMemAddressReserve(&r2, one_gib, 0, hint, 0));
  CHECK(r2 != 0 && r2 != hint);  // overlapping: another address, still success
  CK(cuMemAddressReserve(&r3, kGran, 0, r2, 0));
  CHECK(r3 != r2);  // a hint inside the device region that is taken is not honoured either
  EXPECT(cuMemAddressReserve(&r3, kGran, 0, 0, 1), CUDA_ERROR_INVALID_VALUE);  // flags must be 0
  CK(cuMemAddressFree(r3, kGran));
  CUmemGenericAllocationHandle h;
  EXPECT(cuMemCreate(&h, kGran + 4096, &prop, 0), CUDA_ERROR_INVALID_VALUE);  // not granular
  CK(cuMemCreate(&h, 2 * kGran, &prop, 0));
  CK(cuMemMap(r1 + kGran, 2 * kGran, 0, h, 0));
  EXPECT(cuMemMap(r1 + kGran, 2 * kGran, 0, h, 0), CUDA_ERROR_INVALID_VALUE);  // already mapped
  CUmemAccessDesc acc{};
  acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  CK(cuMemSetAccess(r1 + kGran, 2 * kGran, &acc, 1));
  CK(cuMemsetD32(r1 + kGran, 0x01020304, 2 * kGran / 4));
  uint32_t v = 0;
  CK(cuMemcpyDtoH(&v, r1 + 3 * kGran - 4, 4));
  CHECK(v == 0x01020304);
  CUdeviceptr base;
  size_t size;
  CK(cuMemGetAddressRange(&base, &size, r1 + kGran + 100));
  CHECK(base == r1 + kGran && size == 2 * kGran);  // the mapping, as on the real driver
  CUmemGenericAllocationHandle again;
  CK(cuMemRetainAllocationHandle(&again, reinterpret_cast<void *>(r1 + kGran + 8)));
  CHECK(again == h);
  CK(cuMemRelease(again));
  CK(cuMemRelease(h));  // still mapped: memory stays until unmapped
  CK(cuMemcpyDtoH(&v, r1 + kGran, 4));
  CHECK(v == 0x01020304);
  EXPECT(cuMemUnmap(r1 + kGran, kGran), CUDA_ERROR_INVALID_VALUE);  // partial unmap
  CK(cuMemUnmap(r1 + kGran, 2 * kGran));
  EXPECT(cuMemAddressFree(r1, kGran), CUDA_ERROR_INVALID_VALUE);  // size must match
  CK(cuMemAddressFree(r1, one_gib));
  CK(cuMemAddressFree(r2, one_gib));
  CUdeviceptr r4 = 0;
  CK(cuMemAddressReserve(&r4, one_gib, 0, hint, 0));
  CHECK(r4 == hint);  // free again: honoured again
  CK(cuMemAddressFree(r4, one_gib));
}

void fd_share() {
  setup();
  CUmemAllocationProp prop = fd_prop();
  CUmemGenericAllocationHandle h;
  CK(cuMemCreate(&h, kGran, &prop, 0));
  CUdeviceptr va = vmm_map(h, kGran);
  CK(cuMemsetD32(va, 0xa5a5a5a5, kGran / 4));
  int fd = -1;
  CK(cuMemExportToShareableHandle(&fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
  CHECK(fd >= 0);
  Child c = Child::spawn({"fd-share-child", std::to_string(fd)}, fd);
  close(fd);
  CHECK(c.line() == "written");
  uint32_t v = 0;
  CK(cuMemcpyDtoH(&v, va + 4096, 4));
  CHECK(v == 0x5a5a5a5a);  // the child's write, through the shared memory
  c.say("go\n");
  CHECK(c.wait() == 0);
  CUmemAllocationProp plain = prop;
  plain.requestedHandleTypes = CU_MEM_HANDLE_TYPE_NONE;
  CUmemGenericAllocationHandle h2;
  CK(cuMemCreate(&h2, kGran, &plain, 0));
  EXPECT(cuMemExportToShareableHandle(&fd, h2, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0),
         CUDA_ERROR_INVALID_VALUE);
  CK(cuMemRelease(h2));
  CK(cuMemUnmap(va, kGran));
  CK(cuMemRelease(h));
}

void fd_share_child(int fd) {
  setup();
  CUmemGenericAllocationHandle h;
  CK(cuMemImportFromShareableHandle(&h, reinterpret_cast<void *>(static_cast<intptr_t>(fd)),
                                    CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
  close(fd);
  CUdeviceptr va = vmm_map(h, kGran);
  uint32_t v = 0;
  CK(cuMemcpyDtoH(&v, va + kGran - 4, 4));
  CHECK(v == 0xa5a5a5a5);  // the parent's contents
  CK(cuMemsetD32(va + 4096, 0x5a5a5a5a, 1));
  tell_parent("written");
  wait_parent();
  CK(cuMemUnmap(va, kGran));
  CK(cuMemRelease(h));
}

void streams_events() {
  setup();
  CUstream a, b;
  CK(cuStreamCreateWithPriority(&a, CU_STREAM_NON_BLOCKING, -5));
  CK(cuStreamCreateWithPriority(&b, CU_STREAM_NON_BLOCKING, 3));  // clamped to the least
  int pa = 0, pb = -1, lo, hi;
  CK(cuStreamGetPriority(a, &pa));
  CK(cuStreamGetPriority(b, &pb));
  CK(cuCtxGetStreamPriorityRange(&lo, &hi));
  CHECK(pa == -5 && pb == 0 && lo == 0 && hi == -5);
  CUevent start, mid, end, untimed;
  CK(cuEventCreate(&start, 0));
  CK(cuEventCreate(&mid, 0));
  CK(cuEventCreate(&end, 0));
  CK(cuEventCreate(&untimed, CU_EVENT_DISABLE_TIMING));
  static std::atomic<int> order{0};
  static int seen_by_b = -1;
  order = 0;
  CK(cuEventRecord(start, a));
  CK(cuLaunchHostFunc(a, [](void *) {
    std::this_thread::sleep_for(std::chrono::milliseconds(80));
    order = 1;
  }, nullptr));
  CK(cuEventRecord(mid, a));
  CK(cuStreamWaitEvent(b, mid, 0));
  CK(cuLaunchHostFunc(b, [](void *) { seen_by_b = order.load(); }, nullptr));
  CK(cuEventRecord(end, b));
  CK(cuEventRecord(untimed, b));
  EXPECT(cuEventQuery(end), CUDA_ERROR_NOT_READY);
  EXPECT(cuStreamQuery(b), CUDA_ERROR_NOT_READY);
  float ms = 0;
  EXPECT(cuEventElapsedTime(&ms, start, end), CUDA_ERROR_NOT_READY);
  CK(cuEventSynchronize(end));
  CHECK(seen_by_b == 1);  // b ran after a's 80 ms host function
  CK(cuEventElapsedTime(&ms, start, end));
  CHECK(ms >= 75 && ms < 5000);
  CK(cuStreamSynchronize(b));
  EXPECT(cuEventElapsedTime(&ms, start, untimed), CUDA_ERROR_INVALID_HANDLE);
  CK(cuStreamQuery(a));
  // Legacy default stream: waits for earlier work on blocking streams; non-blocking ones are free.
  CUstream blocking;
  CK(cuStreamCreate(&blocking, 0));
  static std::atomic<int> flag{0};
  flag = 0;
  CK(cuLaunchHostFunc(blocking, [](void *) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    flag = 1;
  }, nullptr));
  static int legacy_saw = -1;
  CK(cuLaunchHostFunc(nullptr, [](void *) { legacy_saw = flag.load(); }, nullptr));
  CK(cuStreamSynchronize(nullptr));
  CHECK(legacy_saw == 1);
  flag = 0;
  CK(cuLaunchHostFunc(a, [](void *) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    flag = 1;
  }, nullptr));
  CK(cuLaunchHostFunc(nullptr, [](void *) { legacy_saw = flag.load(); }, nullptr));
  CK(cuStreamSynchronize(CU_STREAM_LEGACY));
  CHECK(legacy_saw == 0);  // did not wait for the non-blocking stream
  CK(cuCtxSynchronize());
  for (CUevent e : {start, mid, end, untimed}) CK(cuEventDestroy(e));
  for (CUstream s : {a, b, blocking}) CK(cuStreamDestroy(s));
  EXPECT(cuStreamQuery(reinterpret_cast<CUstream>(&flag)), CUDA_ERROR_INVALID_HANDLE);
}

// Parameters as nvcc emits them for (int, float*, struct{double;int;char[9]}, char, double*, float4).
const char kPtx[] = R"(
//
// Generated by hand for cudasim-test
//
.version 8.0
.target sm_90
.address_size 64

.extern .func (.param .b32 func_retval0) vprintf(.param .b64 a, .param .b64 b);
.global .align 4 .b8 table[64];

.visible .entry cudasim_test_echo(
	.param .u32 cudasim_test_echo_param_0,
	.param .u64 .ptr .align 1 cudasim_test_echo_param_1,
	.param .align 8 .b8 cudasim_test_echo_param_2[24],
	.param .u8 cudasim_test_echo_param_3,
	.param .u64 cudasim_test_echo_param_4,
	.param .align 16 .b8 cudasim_test_echo_param_5[16]
)
.maxntid 256, 1, 1
{
	.reg .b32 %r<4>;
	// .shared .b8 commented_out[4096];
	.shared .align 4 .b8 smem[1024];
	ld.shared.u32 %r1, [smem];
	ret;
}

.visible .entry cudasim_test_add(
	.param .u64 cudasim_test_add_param_0,
	.param .u32 cudasim_test_add_param_1,
	.param .u32 cudasim_test_add_param_2
)
{
	ret;
}

.visible .entry cudasim_test_missing()
{
	ret;
}
)";

void param_info() {
  setup();
  CUmodule mod;
  CK(cuModuleLoadData(&mod, kPtx));
  CUfunction f;
  CK(cuModuleGetFunction(&f, mod, "cudasim_test_echo"));
  const size_t want_off[] = {0, 8, 16, 40, 48, 64}, want_size[] = {4, 8, 24, 1, 8, 16};
  for (size_t i = 0; i < 6; i++) {
    size_t off = 99, size = 99;
    CK(cuFuncGetParamInfo(f, i, &off, &size));
    CHECK(off == want_off[i] && size == want_size[i]);
  }
  size_t off, size;
  EXPECT(cuFuncGetParamInfo(f, 6, &off, &size), CUDA_ERROR_INVALID_VALUE);
  CK(cuFuncGetParamInfo(f, 2, &off, nullptr));  // paramSize may be NULL
  int shared = 0;
  CK(cuFuncGetAttribute(&shared, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, f));
  CHECK(shared == 1024);
  EXPECT(cuModuleGetFunction(&f, mod, "nope"), CUDA_ERROR_NOT_FOUND);
  CUdeviceptr g;
  CK(cuModuleGetGlobal(&g, &size, mod, "table"));
  CHECK(size == 64);
  CK(cuModuleUnload(mod));
  // Library path, as cudart 13 loads code: CUkernel handles.
  CUlibrary lib;
  CK(cuLibraryLoadData(&lib, kPtx, nullptr, nullptr, 0, nullptr, nullptr, 0));
  CUkernel k;
  CK(cuLibraryGetKernel(&k, lib, "cudasim_test_echo"));
  for (size_t i = 0; i < 6; i++) {
    CK(cuKernelGetParamInfo(k, i, &off, &size));
    CHECK(off == want_off[i] && size == want_size[i]);
  }
  EXPECT(cuKernelGetParamInfo(k, 6, &off, &size), CUDA_ERROR_INVALID_VALUE);
  // A CUkernel passed as CUfunction: invalid handle, as on the real driver.
  EXPECT(cuFuncGetParamInfo(reinterpret_cast<CUfunction>(k), 0, &off, &size), CUDA_ERROR_INVALID_HANDLE);
  CUfunction kf;
  CK(cuKernelGetFunction(&kf, k));
  CK(cuFuncGetParamInfo(kf, 5, &off, &size));
  CHECK(off == 64 && size == 16);
  CK(cuLibraryUnload(lib));
  CUmodule bad;
  EXPECT(cuModuleLoadData(&bad, ".version 8.0\n.entry broken(.param .u32 a, .param b)\n{ ret; }\n"),
         CUDA_ERROR_INVALID_PTX);
}

void proc_address() {
  using PfnAlloc = CUresult (*)(CUdeviceptr *, size_t);
  void *p = nullptr;
  CUdriverProcAddressQueryResult st;
  CK(cuGetProcAddress_v2("cuMemAlloc", &p, 3020, 0, &st));
  CHECK(p == reinterpret_cast<void *>(&cuMemAlloc_v2) && st == CU_GET_PROC_ADDRESS_SUCCESS);
  CK(cuGetProcAddress_v2("cuLaunchKernel", &p, 7000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, &st));
  CHECK(p == dlsym(RTLD_DEFAULT, "cuLaunchKernel_ptsz") && p != nullptr);
  CK(cuGetProcAddress_v2("cuLaunchKernel", &p, 13000, CU_GET_PROC_ADDRESS_LEGACY_STREAM, &st));
  CHECK(p == reinterpret_cast<void *>(&cuLaunchKernel));
  CK(cuGetProcAddress_v2("cuCtxCreate", &p, 13000, 0, &st));
  CHECK(p == reinterpret_cast<void *>(&cuCtxCreate_v4));
  CK(cuGetProcAddress_v2("cuGetProcAddress", &p, 12000, 0, &st));
  CHECK(p == reinterpret_cast<void *>(&cuGetProcAddress_v2));
  p = reinterpret_cast<void *>(1);
  CK(cuGetProcAddress_v2("cuNoSuchFunction", &p, 13000, 0, &st));
  CHECK(p == nullptr && st == CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
  CK(cuGetProcAddress_v2("", &p, 0, 0, nullptr));  // cudart's stub-library probe
  CHECK(p == nullptr);
  CK(cuGetProcAddress_v2("cuMemAlloc", &p, 1000, 0, &st));
  CHECK(p == nullptr && st == CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT);
  p = reinterpret_cast<void *>(1);
  EXPECT(cuGetProcAddress_v2("cuMemAlloc", &p, 99000, 0, &st), CUDA_ERROR_INVALID_VALUE);
  CHECK(p == reinterpret_cast<void *>(1));  // not written
  // The legacy 4-argument export.
  using Pfn4 = CUresult (*)(const char *, void **, int, cuuint64_t);
  CK(cuGetProcAddress_v2("cuGetProcAddress", &p, 11030, 0, &st));
  auto legacy = reinterpret_cast<Pfn4>(p);
  CK(legacy("cuMemAlloc", &p, 3020, 0));
  CHECK(p == reinterpret_cast<void *>(&cuMemAlloc_v2));
  // Not simulated: a stub that answers CUDA_ERROR_NOT_SUPPORTED.
  CK(cuGetProcAddress_v2("cuGraphLaunch", &p, 13000, 0, &st));
  CHECK(p != nullptr && st == CU_GET_PROC_ADDRESS_SUCCESS);
  using PfnGraph = CUresult (*)(CUgraphExec, CUstream);
  CHECK(reinterpret_cast<PfnGraph>(p)(nullptr, nullptr) == CUDA_ERROR_NOT_SUPPORTED);
  // Through the pointer, the call works.
  setup();
  CK(cuGetProcAddress_v2("cuMemAlloc", &p, 12000, 0, &st));
  CUdeviceptr d;
  CK(reinterpret_cast<PfnAlloc>(p)(&d, 4096));
  CK(cuMemFree(d));
  int version = 0;
  CK(cuDriverGetVersion(&version));
  CHECK(version == 13000);
  char name[64];
  CK(cuDeviceGetName(name, sizeof name, 0));
  CHECK(strcmp(name, "phos-sim") == 0);
  CUuuid u1, u2;
  CK(cuDeviceGetUuid(&u1, 0));
  CK(cuDeviceGetUuid(&u2, 0));
  CHECK(memcmp(&u1, &u2, sizeof u1) == 0);
  int major = 0, sms = 0;
  CK(cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 0));
  CK(cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 0));
  CHECK(major == 9 && sms > 0);
  const char *s = nullptr;
  CK(cuGetErrorName(CUDA_ERROR_ILLEGAL_STATE, &s));
  CHECK(s && strcmp(s, "CUDA_ERROR_ILLEGAL_STATE") == 0);
  CK(cuGetErrorString(CUDA_ERROR_INVALID_VALUE, &s));
  CHECK(s && strcmp(s, "invalid argument") == 0);
}

void launch() {
  setup();
  CUmodule mod;
  CK(cuModuleLoadData(&mod, kPtx));
  CUfunction add, echo, missing;
  CK(cuModuleGetFunction(&add, mod, "cudasim_test_add"));
  CK(cuModuleGetFunction(&echo, mod, "cudasim_test_echo"));
  CK(cuModuleGetFunction(&missing, mod, "cudasim_test_missing"));
  const unsigned n = 100000;
  CUdeviceptr d;
  CK(cuMemAlloc(&d, n * 4));
  CK(cuMemsetD32(d, 1, n));
  unsigned count = n;
  int value = 2;
  void *params[] = {&d, &count, &value};
  CK(cuLaunchKernel(add, (n + 127) / 128, 1, 1, 128, 1, 1, 0, nullptr, params, nullptr));
  // extra convention: a caller-packed buffer.
  struct { CUdeviceptr p; unsigned n; int v; } packed{d, n, 3};
  size_t psize = sizeof packed;
  void *extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, &packed, CU_LAUNCH_PARAM_BUFFER_SIZE, &psize,
                   CU_LAUNCH_PARAM_END};
  CK(cuLaunchKernel(add, (n + 255) / 256, 1, 1, 256, 1, 1, 0, nullptr, nullptr, extra));
  EXPECT(cuLaunchKernel(add, 1, 1, 1, 1, 1, 1, 0, nullptr, params, extra), CUDA_ERROR_INVALID_VALUE);
  EXPECT(cuLaunchKernel(add, 1, 1, 1, 2048, 1, 1, 0, nullptr, params, nullptr), CUDA_ERROR_INVALID_VALUE);
  // cuLaunchKernelEx on a stream, with a CUkernel cast to CUfunction.
  CUlibrary lib;
  CK(cuLibraryLoadData(&lib, kPtx, nullptr, nullptr, 0, nullptr, nullptr, 0));
  CUkernel k;
  CK(cuLibraryGetKernel(&k, lib, "cudasim_test_add"));
  CUstream s;
  CK(cuStreamCreate(&s, 0));
  CUlaunchConfig cfg{};
  cfg.gridDimX = (n + 63) / 64;
  cfg.gridDimY = cfg.gridDimZ = 1;
  cfg.blockDimX = 64;
  cfg.blockDimY = cfg.blockDimZ = 1;
  cfg.hStream = s;
  value = 4;  // params are packed at launch time: later changes must not leak in
  CK(cuLaunchKernelEx(&cfg, reinterpret_cast<CUfunction>(k), params, nullptr));
  value = 1000;
  CK(cuStreamSynchronize(s));
  std::vector<int> h(n);
  CK(cuMemcpyDtoH(h.data(), d, n * 4));
  bool all = true;
  for (unsigned i = 0; i < n; i++) all = all && h[i] == 1 + 2 + 3 + 4;
  CHECK(all);
  // The packed buffer a kernel sees: every parameter at its ABI offset.
  CUdeviceptr out;
  CK(cuMemAlloc(&out, 256));
  CK(cuMemsetD8(out, 0xee, 256));
  int a0 = 0x11223344;
  struct S { double d; int i; char c[9]; } s2{1.5, 7, "abcdefgh"};
  char c3 = 'x';
  CUdeviceptr p4 = 0x1234567890ull;
  float f5[4] = {1, 2, 3, 4};
  void *eparams[] = {&a0, &out, &s2, &c3, &p4, f5};
  CK(cuLaunchKernel(echo, 3, 2, 1, 32, 1, 1, 64, nullptr, eparams, nullptr));
  unsigned char buf[256];
  CK(cuMemcpyDtoH(buf, out, sizeof buf));
  CHECK(memcmp(buf + 0, &a0, 4) == 0);
  CHECK(memcmp(buf + 8, &out, 8) == 0);
  CHECK(memcmp(buf + 16, &s2, 24) == 0);
  CHECK(buf[40] == 'x');
  CHECK(memcmp(buf + 48, &p4, 8) == 0);
  CHECK(memcmp(buf + 64, f5, 16) == 0);
  CHECK(buf[128] == 0 && buf[131] == 0);  // shared memory zeroed per block
  EXPECT(cuLaunchKernel(missing, 1, 1, 1, 1, 1, 1, 0, nullptr, nullptr, nullptr), CUDA_ERROR_NOT_FOUND);
  CK(cuStreamDestroy(s));
  CK(cuLibraryUnload(lib));
  CK(cuModuleUnload(mod));
  CK(cuMemFree(d));
  CK(cuMemFree(out));
}

// ---- checkpoint API ----
CUprocessState state_of(pid_t pid) {
  CUprocessState st = CU_PROCESS_STATE_FAILED;
  CK(cuCheckpointProcessGetState(pid, &st));
  return st;
}

// Child: calls the API in a loop and reports each completed call with one byte on stdout.
void lock_child() {
  setup();
  CUdeviceptr d;
  CK(cuMemAlloc(&d, 4096));
  tell_parent("ready");
  for (int i = 0; i < 100000; i++) {
    CK(cuMemsetD32(d, i, 1024));
    if (write(1, "x", 1) != 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

size_t drain(Child &c) {
  size_t n = 0;
  char buf[4096];
  for (;;) {
    pollfd p{c.from, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0) return n;
    ssize_t r = read(c.from, buf, sizeof buf);
    if (r <= 0) return n;
    n += static_cast<size_t>(r);
  }
}

void lock_blocks() {
  Child c = Child::spawn({"lock-child"});
  CHECK(c.line() == "ready");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(state_of(c.pid) == CU_PROCESS_STATE_RUNNING);
  CHECK(drain(c) > 0);  // it is making calls
  CUcheckpointLockArgs args{};
  args.timeoutMs = 5000;
  CK(cuCheckpointProcessLock(c.pid, &args));
  CHECK(state_of(c.pid) == CU_PROCESS_STATE_LOCKED);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  drain(c);  // a call that was already past the gate may still report
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(drain(c) == 0);  // blocked: no call completed while locked
  EXPECT(cuCheckpointProcessLock(c.pid, &args), CUDA_ERROR_ILLEGAL_STATE);
  CK(cuCheckpointProcessUnlock(c.pid, nullptr));
  CHECK(state_of(c.pid) == CU_PROCESS_STATE_RUNNING);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(drain(c) > 0);  // resumed
  kill(c.pid, SIGKILL);
  c.wait();
}

constexpr size_t kCkptBytes = 3 * kGran + 12345;

uint64_t pattern(size_t i) { return (i * 0x9E3779B97F4A7C15ull) ^ (i >> 7); }

// Child: device memory of every kind (cuMemAlloc, VMM at a fixed hint, an exported VMM handle), then
// waits; on "verify" checks every byte and that it can keep working.
void ckpt_child() {
  setup();
  CUdeviceptr a;
  CK(cuMemAlloc(&a, kCkptBytes));
  CUmemAllocationProp prop = fd_prop();
  CUmemGenericAllocationHandle h;
  CK(cuMemCreate(&h, 2 * kGran, &prop, 0));
  CUdeviceptr v = vmm_map(h, 2 * kGran, 0x110000000000ull);
  CHECK(v == 0x110000000000ull);
  int fd = -1;
  CK(cuMemExportToShareableHandle(&fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
  close(fd);  // an fd left open would keep the memfd alive across Checkpoint
  std::vector<uint64_t> host(kCkptBytes / 8);
  for (size_t i = 0; i < host.size(); i++) host[i] = pattern(i);
  CK(cuMemcpyHtoD(a, host.data(), host.size() * 8));
  CK(cuMemcpyHtoD(v, host.data(), 2 * kGran));
  CUstream s;
  CK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
  tell_parent("ready");
  if (wait_parent() != "verify") return;
  std::vector<uint64_t> back(host.size());
  CK(cuMemcpyDtoH(back.data(), a, back.size() * 8));
  CHECK(back == host);
  std::fill(back.begin(), back.end(), 0);
  CK(cuMemcpyDtoH(back.data(), v, 2 * kGran));
  CHECK(memcmp(back.data(), host.data(), 2 * kGran) == 0);
  CK(cuMemsetD32Async(v, 7, 16, s));
  CK(cuStreamSynchronize(s));
  CK(cuMemUnmap(v, 2 * kGran));
  CK(cuMemRelease(h));
  CK(cuMemFree(a));
  tell_parent(g_failures ? "bad" : "ok");
}

bool has_memfd_mapping(pid_t pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  for (std::string line; std::getline(maps, line);)
    if (line.find("memfd:cudasim") != std::string::npos) return true;
  return false;
}

void checkpoint_restore() {
  Child c = Child::spawn({"ckpt-child"});
  CHECK(c.line() == "ready");
  CHECK(has_memfd_mapping(c.pid));
  int tid = 0;
  CK(cuCheckpointProcessGetRestoreThreadId(c.pid, &tid));
  CHECK(tid > 0 && tid != c.pid);
  CK(cuCheckpointProcessLock(c.pid, nullptr));
  EXPECT(cuCheckpointProcessRestore(c.pid, nullptr), CUDA_ERROR_ILLEGAL_STATE);
  auto t0 = Clock::now();
  CK(cuCheckpointProcessCheckpoint(c.pid, nullptr));
  fprintf(stderr, "checkpoint of %zu bytes: %.1f ms\n", kCkptBytes + 2 * kGran, ms_since(t0));
  CHECK(state_of(c.pid) == CU_PROCESS_STATE_CHECKPOINTED);
  CHECK(!has_memfd_mapping(c.pid));  // device memory is plain host memory now: CRIU-dumpable
  EXPECT(cuCheckpointProcessCheckpoint(c.pid, nullptr), CUDA_ERROR_ILLEGAL_STATE);
  EXPECT(cuCheckpointProcessUnlock(c.pid, nullptr), CUDA_ERROR_ILLEGAL_STATE);
  CK(cuCheckpointProcessRestore(c.pid, nullptr));
  CHECK(state_of(c.pid) == CU_PROCESS_STATE_LOCKED);
  CHECK(has_memfd_mapping(c.pid));
  CK(cuCheckpointProcessUnlock(c.pid, nullptr));
  c.say("verify\n");
  CHECK(c.line() == "ok");
  CHECK(c.wait() == 0);
}

// Child: a stream that stays busy for 6 s, so a Lock with a short timeout cannot drain it. (2 s was
// not enough on a loaded 2-core machine under ASan: the lock request reached the child after the work
// had drained. cudasim starts the lock timeout when the target takes the request, not at the call.)
void busy_child() {
  setup();
  CUstream s;
  CK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
  CK(cuLaunchHostFunc(s, [](void *) { std::this_thread::sleep_for(std::chrono::seconds(6)); }, nullptr));
  tell_parent("ready");
  wait_parent();
}

void checkpoint_errors() {
  CUprocessState st;
  EXPECT(cuCheckpointProcessGetState(0, &st), CUDA_ERROR_INVALID_VALUE);
  EXPECT(cuCheckpointProcessGetState(0x3fffffff, &st), CUDA_ERROR_INVALID_VALUE);  // no such pid
  pid_t plain = fork();  // a process without cudasim
  if (plain == 0) {
    pause();
    _exit(0);
  }
  EXPECT(cuCheckpointProcessGetState(plain, &st), CUDA_ERROR_INVALID_VALUE);
  EXPECT(cuCheckpointProcessLock(plain, nullptr), CUDA_ERROR_INVALID_VALUE);
  kill(plain, SIGKILL);
  waitpid(plain, nullptr, 0);
  Child c = Child::spawn({"busy-child"});
  CHECK(c.line() == "ready");
  CUcheckpointLockArgs args{};
  args.timeoutMs = 200;
  auto t0 = Clock::now();
  EXPECT(cuCheckpointProcessLock(c.pid, &args), CUDA_ERROR_TIMEOUT);
  double waited = ms_since(t0);
  CHECK(waited >= 150 && waited < 5000);
  CHECK(state_of(c.pid) == CU_PROCESS_STATE_RUNNING);  // a timed-out lock leaves it running
  EXPECT(cuCheckpointProcessCheckpoint(c.pid, nullptr), CUDA_ERROR_ILLEGAL_STATE);
  args.timeoutMs = 0;  // no timeout: waits for the stream to drain
  CK(cuCheckpointProcessLock(c.pid, &args));
  CK(cuCheckpointProcessUnlock(c.pid, nullptr));
  c.say("done\n");
  CHECK(c.wait() == 0);
}

// ---- several devices (PHOS_SIM_GPUS=2) ----
CUcontext primary(int dev) {
  CUcontext c = nullptr;
  CK(cuDevicePrimaryCtxRetain(&c, dev));
  return c;
}

std::string uuid_str(const CUuuid &u) {
  const auto *b = reinterpret_cast<const unsigned char *>(u.bytes);
  char buf[64];
  snprintf(buf, sizeof buf, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
           b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
  return buf;
}

std::string uuid_of(int dev) {
  CUuuid u{};
  CK(cuDeviceGetUuid(&u, dev));
  return uuid_str(u);
}

std::string bus_of(int dev) {
  char bus[32] = {0};
  CK(cuDeviceGetPCIBusId(bus, sizeof bus, dev));
  return bus;
}

int ordinal_of(CUdeviceptr p) {
  int o = -1;
  CK(cuPointerGetAttribute(&o, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, p));
  return o;
}

void fill(std::vector<uint64_t> &v, uint64_t salt) {
  for (size_t i = 0; i < v.size(); i++) v[i] = pattern(i) ^ salt;
}

// Child: prints what it sees through CUDA_VISIBLE_DEVICES: "COUNT UUID0 UUID1 ..." (or "none").
void visible_child() {
  if (cuInit(0) == CUDA_ERROR_NO_DEVICE) {
    tell_parent("none");
    return;
  }
  int n = 0;
  CK(cuDeviceGetCount(&n));
  std::string line = std::to_string(n);
  for (int i = 0; i < n; i++) line += " " + uuid_of(i);
  tell_parent(line.c_str());
}

std::string visible_as(const char *value) {
  setenv("CUDA_VISIBLE_DEVICES", value, 1);
  Child c = Child::spawn({"visible-child"});
  unsetenv("CUDA_VISIBLE_DEVICES");
  std::string l = c.line();
  CHECK(c.wait() == 0);
  return l;
}

void devices() {
  setup();
  int n = 0;
  CK(cuDeviceGetCount(&n));
  CHECK(n == 2);
  std::string u0 = uuid_of(0), u1 = uuid_of(1);
  CHECK(u0 != u1);
  CHECK(bus_of(0) != bus_of(1));
  CHECK(bus_of(0) == "0000:53:00.0");  // what the single-device sim always reported
  for (int d = 0; d < 2; d++) {
    CUdevice back = -1;
    CK(cuDeviceGetByPCIBusId(&back, bus_of(d).c_str()));
    CHECK(back == d);
    int bus = -1;
    CK(cuDeviceGetAttribute(&bus, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, d));
    CHECK(bus == static_cast<int>(strtol(bus_of(d).substr(5, 2).c_str(), nullptr, 16)));
  }
  CUdevice dummy;
  EXPECT(cuDeviceGet(&dummy, 2), CUDA_ERROR_INVALID_DEVICE);
  int can = -1;
  CK(cuDeviceCanAccessPeer(&can, 0, 1));
  CHECK(can == 1);
  CK(cuDeviceCanAccessPeer(&can, 0, 0));
  CHECK(can == 0);
  CK(cuDeviceGetP2PAttribute(&can, CU_DEVICE_P2P_ATTRIBUTE_ACCESS_SUPPORTED, 1, 0));
  CHECK(can == 1);
  // Primary contexts per device, switching with SetCurrent and push/pop.
  CUcontext c0 = primary(0), c1 = primary(1);
  CHECK(c0 != c1);
  CUdevice d = -1;
  CK(cuCtxSetCurrent(c1));
  CK(cuCtxGetDevice(&d));
  CHECK(d == 1);
  CK(cuCtxPushCurrent(c0));
  CK(cuCtxGetDevice(&d));
  CHECK(d == 0);
  CUcontext popped = nullptr;
  CK(cuCtxPopCurrent(&popped));
  CHECK(popped == c0);
  CK(cuCtxGetDevice(&d));
  CHECK(d == 1);
  // Memory: own budget and VA sub-region per device; pointers report their device.
  CUdeviceptr a1;
  CK(cuMemAlloc(&a1, 768 << 20));  // PHOS_SIM_MEM=1G each
  size_t free1, total1, free0, total0;
  CK(cuMemGetInfo(&free1, &total1));
  CK(cuCtxSetCurrent(c0));
  CK(cuMemGetInfo(&free0, &total0));
  CHECK(total0 == total1 && free0 == total0 && free1 == total1 - (768 << 20));
  CUdeviceptr a0, big;
  CK(cuMemAlloc(&a0, 768 << 20));  // device 0 has its own 1 GiB
  EXPECT(cuMemAlloc(&big, 768 << 20), CUDA_ERROR_OUT_OF_MEMORY);
  CHECK(ordinal_of(a0) == 0 && ordinal_of(a1) == 1);
  CHECK(a1 > a0 && a1 - a0 >= (size_t{64} << 30));  // separate sub-regions
  CUcontext owner = nullptr;
  CK(cuPointerGetAttribute(&owner, CU_POINTER_ATTRIBUTE_CONTEXT, a1));
  CHECK(owner == c1);
  CK(cuMemFree(a0));
  CK(cuMemFree(a1));
  // A stream remembers its device.
  CK(cuCtxSetCurrent(c1));
  CUstream st;
  CK(cuStreamCreate(&st, CU_STREAM_NON_BLOCKING));
  CK(cuCtxSetCurrent(c0));
  CK(cuStreamGetDevice(st, &d));
  CHECK(d == 1);
  CK(cuStreamDestroy(st));
  // CUDA_VISIBLE_DEVICES: indices, UUIDs (and prefixes), stop at the first invalid entry, empty = none.
  CHECK(visible_as("1") == "1 " + u1);
  CHECK(visible_as("1,0") == "2 " + u1 + " " + u0);
  CHECK(visible_as(u1.c_str()) == "1 " + u1);
  CHECK(visible_as(u0.substr(0, 12).c_str()) == "1 " + u0);
  CHECK(visible_as("0,7,1") == "1 " + u0);
  CHECK(visible_as("0,0") == "1 " + u0);
  CHECK(visible_as("") == "none");
}

void peer_access() {
  setup();
  CUcontext c0 = primary(0), c1 = primary(1);
  CK(cuCtxSetCurrent(c0));
  EXPECT(cuCtxDisablePeerAccess(c1), CUDA_ERROR_PEER_ACCESS_NOT_ENABLED);
  EXPECT(cuCtxEnablePeerAccess(c1, 1), CUDA_ERROR_INVALID_VALUE);
  EXPECT(cuCtxEnablePeerAccess(c0, 0), CUDA_ERROR_INVALID_DEVICE);  // a device is not its own peer
  CK(cuCtxEnablePeerAccess(c1, 0));
  EXPECT(cuCtxEnablePeerAccess(c1, 0), CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED);
  CK(cuCtxSetCurrent(c1));
  EXPECT(cuCtxDisablePeerAccess(c0), CUDA_ERROR_PEER_ACCESS_NOT_ENABLED);  // directional
  CK(cuCtxSetCurrent(c0));
  CK(cuCtxDisablePeerAccess(c1));
  EXPECT(cuCtxDisablePeerAccess(c1), CUDA_ERROR_PEER_ACCESS_NOT_ENABLED);

  // Peer copies, bit-exact, without peer access (the driver stages) and with it.
  const size_t n = (3 << 20) / 8 + 1001;
  std::vector<uint64_t> host(n), back(n);
  fill(host, 0x5a);
  CUdeviceptr x0, y0, x1;
  CK(cuMemAlloc(&x0, n * 8));
  CK(cuMemAlloc(&y0, n * 8));
  CK(cuCtxSetCurrent(c1));
  CK(cuMemAlloc(&x1, n * 8));
  CK(cuCtxSetCurrent(c0));
  CK(cuMemcpyHtoD(x0, host.data(), n * 8));
  CK(cuMemcpyPeer(x1, c1, x0, c0, n * 8));
  CK(cuMemcpyDtoH(back.data(), x1, n * 8));
  CHECK(back == host);
  CUstream s;
  CK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
  CK(cuMemsetD8(x0, 0, n * 8));
  CK(cuMemcpyPeerAsync(y0, c0, x1, c1, n * 8, s));
  CK(cuStreamSynchronize(s));
  std::fill(back.begin(), back.end(), 0);
  CK(cuMemcpyDtoH(back.data(), y0, n * 8));
  CHECK(back == host);
  CK(cuMemcpyDtoD(x0, x1, n * 8));  // unified addressing: a plain DtoD crosses devices too
  std::fill(back.begin(), back.end(), 0);
  CK(cuMemcpyDtoH(back.data(), x0, n * 8));
  CHECK(back == host);
  EXPECT(cuMemcpyPeer(x1, nullptr, x0, c0, 8), CUDA_ERROR_INVALID_CONTEXT);
  std::vector<uint64_t> h8(1);
  EXPECT(cuMemcpyPeer(reinterpret_cast<CUdeviceptr>(h8.data()), c1, x0, c0, 8), CUDA_ERROR_INVALID_VALUE);

  // Kernels: another device's memory faults unless peer access is enabled.
  CUmodule mod;
  CK(cuModuleLoadData(&mod, kPtx));
  CUfunction add;
  CK(cuModuleGetFunction(&add, mod, "cudasim_test_add"));
  CK(cuMemsetD32(x1, 1, 1024));
  unsigned count = 1024;
  int value = 2;
  void *params[] = {&x1, &count, &value};
  EXPECT(cuLaunchKernel(add, 8, 1, 1, 128, 1, 1, 0, s, params, nullptr), CUDA_ERROR_ILLEGAL_ADDRESS);
  CK(cuCtxEnablePeerAccess(c1, 0));
  CK(cuLaunchKernel(add, 8, 1, 1, 128, 1, 1, 0, s, params, nullptr));
  CK(cuStreamSynchronize(s));
  std::vector<int> ints(1024);
  CK(cuMemcpyDtoH(ints.data(), x1, 4096));
  CHECK(std::all_of(ints.begin(), ints.end(), [](int v) { return v == 3; }));

  // VMM on device 1, access per device.
  CUmemAllocationProp prop = fd_prop();
  CUmemGenericAllocationHandle h;
  prop.location.id = 2;
  EXPECT(cuMemCreate(&h, kGran, &prop, 0), CUDA_ERROR_INVALID_DEVICE);
  prop.location.id = 1;
  CK(cuMemCreate(&h, kGran, &prop, 0));
  CUdeviceptr v;
  CK(cuMemAddressReserve(&v, kGran, 0, 0, 0));
  CK(cuMemMap(v, kGran, 0, h, 0));
  CUmemAccessDesc acc{};
  acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  acc.location.id = 1;
  acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  CK(cuMemSetAccess(v, kGran, &acc, 1));
  CHECK(ordinal_of(v) == 1);
  unsigned long long flags = 99;
  CUmemLocation loc{CU_MEM_LOCATION_TYPE_DEVICE, 0};
  CK(cuMemGetAccess(&flags, &loc, v));
  CHECK(flags == CU_MEM_ACCESS_FLAGS_PROT_NONE);
  loc.id = 1;
  CK(cuMemGetAccess(&flags, &loc, v));
  CHECK(flags == CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
  void *vparams[] = {&v, &count, &value};
  // Peer access between contexts does not open VMM memory: only cuMemSetAccess does.
  EXPECT(cuLaunchKernel(add, 8, 1, 1, 128, 1, 1, 0, s, vparams, nullptr), CUDA_ERROR_ILLEGAL_ADDRESS);
  acc.location.id = 0;
  acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READ;
  CK(cuMemSetAccess(v, kGran, &acc, 1));
  loc.id = 0;
  CK(cuMemGetAccess(&flags, &loc, v));
  CHECK(flags == CU_MEM_ACCESS_FLAGS_PROT_READ);
  unsigned pflags = 99;
  CK(cuPointerGetAttribute(&pflags, CU_POINTER_ATTRIBUTE_ACCESS_FLAGS, v));  // from device 0
  CHECK(pflags == CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READ);
  loc.id = 1;
  CK(cuMemGetAccess(&flags, &loc, v));
  CHECK(flags == CU_MEM_ACCESS_FLAGS_PROT_READWRITE);  // untouched by the device-0 descriptor
  CK(cuMemsetD32(v, 5, 1024));
  CK(cuLaunchKernel(add, 8, 1, 1, 128, 1, 1, 0, s, vparams, nullptr));
  CK(cuStreamSynchronize(s));
  CK(cuMemcpyDtoH(ints.data(), v, 4096));
  CHECK(std::all_of(ints.begin(), ints.end(), [](int x) { return x == 7; }));
  acc.location.id = 2;
  EXPECT(cuMemSetAccess(v, kGran, &acc, 1), CUDA_ERROR_INVALID_DEVICE);
  CK(cuMemUnmap(v, kGran));
  CK(cuMemAddressFree(v, kGran));
  CK(cuMemRelease(h));
  CK(cuStreamDestroy(s));
  CK(cuModuleUnload(mod));
  CK(cuMemFree(x0));
  CK(cuMemFree(y0));
  CK(cuMemFree(x1));
}

// Child: memory on both devices (cuMemAlloc each, VMM on device 1 at a fixed hint), reports
// "ready UUID0 UUID1 BUS0 BUS1"; on "verify" checks every byte, the identity it now sees, and that it
// keeps working on both devices (kernels, peer copies); says "ok DEV0UUID DEV1UUID".
constexpr size_t kMgpuBytes = 2 * kGran + 4321;

void mgpu_child() {
  setup();
  CUcontext c0 = primary(0), c1 = primary(1);
  std::vector<uint64_t> h0(kMgpuBytes / 8), h1(kMgpuBytes / 8), hv(2 * kGran / 8);
  fill(h0, 0);
  fill(h1, 1);
  fill(hv, 2);
  CUdeviceptr a0, a1;
  CK(cuMemAlloc(&a0, kMgpuBytes));
  CK(cuMemcpyHtoD(a0, h0.data(), h0.size() * 8));
  CK(cuCtxSetCurrent(c1));
  CK(cuMemAlloc(&a1, kMgpuBytes));
  CK(cuMemcpyHtoD(a1, h1.data(), h1.size() * 8));
  CUmemAllocationProp prop = fd_prop();
  prop.location.id = 1;
  CUmemGenericAllocationHandle h;
  CK(cuMemCreate(&h, 2 * kGran, &prop, 0));
  CUdeviceptr v = 0;
  CK(cuMemAddressReserve(&v, 2 * kGran, 0, 0x120000000000ull, 0));
  CK(cuMemMap(v, 2 * kGran, 0, h, 0));
  CUmemAccessDesc acc{};
  acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  acc.location.id = 1;
  acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  CK(cuMemSetAccess(v, 2 * kGran, &acc, 1));
  CK(cuMemcpyHtoD(v, hv.data(), 2 * kGran));
  CK(cuCtxSetCurrent(c0));
  CK(cuCtxEnablePeerAccess(c1, 0));
  std::string ready = "ready " + uuid_of(0) + " " + uuid_of(1) + " " + bus_of(0) + " " + bus_of(1);
  tell_parent(ready.c_str());
  if (wait_parent() != "verify") return;
  std::vector<uint64_t> back(h0.size());
  CK(cuMemcpyDtoH(back.data(), a0, back.size() * 8));
  CHECK(back == h0);
  CK(cuMemcpyDtoH(back.data(), a1, back.size() * 8));
  CHECK(back == h1);
  std::vector<uint64_t> vb(hv.size());
  CK(cuMemcpyDtoH(vb.data(), v, 2 * kGran));
  CHECK(vb == hv);
  // Same ordinals, same owners; the current context is still device 0's primary.
  CHECK(ordinal_of(a0) == 0 && ordinal_of(a1) == 1 && ordinal_of(v) == 1);
  CUdevice d = -1;
  CK(cuCtxGetDevice(&d));
  CHECK(d == 0);
  // Keeps working: a kernel on device 0 through peer access, a peer copy back, VMM access rules.
  CUmodule mod;
  CK(cuModuleLoadData(&mod, kPtx));
  CUfunction add;
  CK(cuModuleGetFunction(&add, mod, "cudasim_test_add"));
  unsigned count = 4096;
  int value = 9;
  void *params[] = {&a1, &count, &value};
  CK(cuLaunchKernel(add, 32, 1, 1, 128, 1, 1, 0, nullptr, params, nullptr));
  CK(cuMemcpyPeer(a0, c0, a1, c1, kMgpuBytes));
  CK(cuMemcpyDtoH(back.data(), a0, back.size() * 8));
  auto *ints = reinterpret_cast<int *>(h1.data());
  for (unsigned i = 0; i < count; i++) ints[i] += value;
  CHECK(back == h1);
  void *vparams[] = {&v, &count, &value};
  EXPECT(cuLaunchKernel(add, 32, 1, 1, 128, 1, 1, 0, nullptr, vparams, nullptr), CUDA_ERROR_ILLEGAL_ADDRESS);
  CK(cuCtxSetCurrent(c1));
  CK(cuLaunchKernel(add, 32, 1, 1, 128, 1, 1, 0, nullptr, vparams, nullptr));
  CK(cuCtxSynchronize());
  CK(cuModuleUnload(mod));
  CK(cuMemUnmap(v, 2 * kGran));
  CK(cuMemRelease(h));
  CK(cuMemFree(a1));
  CK(cuCtxSetCurrent(c0));
  CK(cuMemFree(a0));
  std::string ok = std::string(g_failures ? "bad" : "ok") + " " + uuid_of(0) + " " + uuid_of(1) + " " +
                   bus_of(0) + " " + bus_of(1);
  tell_parent(ok.c_str());
}

std::vector<std::string> words(const std::string &line) {
  std::vector<std::string> w;
  size_t p = 0;
  while (p < line.size()) {
    size_t e = line.find(' ', p);
    if (e == std::string::npos) e = line.size();
    w.push_back(line.substr(p, e - p));
    p = e + 1;
  }
  return w;
}

CUuuid parse_uuid(const std::string &s) {
  CUuuid u{};
  std::string hex;
  for (char c : s.substr(4))
    if (c != '-') hex.push_back(c);
  for (int i = 0; i < 16; i++) u.bytes[i] = static_cast<char>(strtoul(hex.substr(2 * i, 2).c_str(), nullptr, 16));
  return u;
}

CUresult restore_with(pid_t pid, const std::vector<std::pair<std::string, std::string>> &map) {
  std::vector<CUcheckpointGpuPair> pairs;
  for (auto &[from, to] : map) pairs.push_back({parse_uuid(from), parse_uuid(to)});
  CUcheckpointRestoreArgs args{};
  args.gpuPairs = pairs.data();
  args.gpuPairsCount = static_cast<unsigned>(pairs.size());
  return cuCheckpointProcessRestore(pid, &args);
}

void restore_remap() {
  CK(cuInit(0));
  Child c = Child::spawn({"mgpu-child"});
  std::vector<std::string> r = words(c.line());
  CHECK(r.size() == 5 && r[0] == "ready");
  if (r.size() != 5) {
    kill(c.pid, SIGKILL);
    c.wait();
    return;
  }
  const std::string u0 = r[1], u1 = r[2], b0 = r[3], b1 = r[4];
  CHECK(u0 == uuid_of(0) && u1 == uuid_of(1));  // the same machine's sim GPUs
  CK(cuCheckpointProcessLock(c.pid, nullptr));
  CK(cuCheckpointProcessCheckpoint(c.pid, nullptr));
  // Every device the process sees must be mapped, each once, onto a GPU that exists.
  EXPECT(restore_with(c.pid, {{u0, u1}}), CUDA_ERROR_INVALID_VALUE);
  CHECK(state_of(c.pid) == CU_PROCESS_STATE_CHECKPOINTED);
  EXPECT(restore_with(c.pid, {{u0, u1}, {u1, u1}}), CUDA_ERROR_INVALID_VALUE);
  EXPECT(restore_with(c.pid, {{u0, u1}, {u0, u0}}), CUDA_ERROR_INVALID_VALUE);
  std::string nowhere = "GPU-00000000-0000-0000-0000-000000000000";
  EXPECT(restore_with(c.pid, {{u0, u1}, {u1, nowhere}}), CUDA_ERROR_INVALID_VALUE);
  EXPECT(restore_with(c.pid, {{u0, u1}, {u1, u0}, {nowhere, u0}}), CUDA_ERROR_INVALID_VALUE);
  CUcheckpointRestoreArgs bad{};
  bad.gpuPairsCount = 2;
  EXPECT(cuCheckpointProcessRestore(c.pid, &bad), CUDA_ERROR_INVALID_VALUE);
  CHECK(state_of(c.pid) == CU_PROCESS_STATE_CHECKPOINTED);
  CK(restore_with(c.pid, {{u0, u1}, {u1, u0}}));
  CHECK(state_of(c.pid) == CU_PROCESS_STATE_LOCKED);
  CK(cuCheckpointProcessUnlock(c.pid, nullptr));
  c.say("verify\n");
  std::vector<std::string> ok = words(c.line());
  // The process keeps its ordinals; they now name the other GPUs (UUID and PCI bus id follow).
  CHECK(ok.size() == 5 && ok[0] == "ok");
  if (ok.size() == 5) CHECK(ok[1] == u1 && ok[2] == u0 && ok[3] == b1 && ok[4] == b0);
  CHECK(c.wait() == 0);
}

// The same through ckpt-ctl (PHOS_CKPT_CTL): ordinals and UUIDs in --gpu-map.
void ckpt_ctl_remap() {
  const char *tool = getenv("PHOS_CKPT_CTL");
  CHECK(tool != nullptr);
  if (!tool) return;
  CK(cuInit(0));
  Child c = Child::spawn({"mgpu-child"});
  std::vector<std::string> r = words(c.line());
  CHECK(r.size() == 5 && r[0] == "ready");
  if (r.size() != 5) {
    kill(c.pid, SIGKILL);
    c.wait();
    return;
  }
  auto run = [&](const std::string &args) {
    std::string cmd = std::string(tool) + " " + args + " " + std::to_string(c.pid) + " >&2";
    int st = system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  };
  CHECK(run("suspend") == 0);
  CHECK(run("--gpu-map 0=1 resume") == 1);                     // device 1 unmapped
  CHECK(run("--gpu-map 0=1,1=7 resume") == 2);                 // no device 7 here: bad usage
  CHECK(run("--gpu-map 0=1,0=0 restore") == 1);                // device 0 twice
  CHECK(run("--gpu-map 0=1,junk resume") == 2);
  CHECK(state_of(c.pid) == CU_PROCESS_STATE_CHECKPOINTED);
  CHECK(run("--gpu-map " + r[1] + "=1,1=" + r[1].substr(0, 13) + " resume") == 0);
  c.say("verify\n");
  std::vector<std::string> ok = words(c.line());
  CHECK(ok.size() == 5 && ok[0] == "ok");
  if (ok.size() == 5) CHECK(ok[1] == r[2] && ok[2] == r[1]);
  CHECK(c.wait() == 0);
}

struct Check {
  const char *name;
  std::function<void()> run;
};

}  // namespace

int main(int argc, char **argv) {
  const std::vector<Check> checks = {
      {"alloc-copy-memset", alloc_copy_memset}, {"vmm-hint", vmm_hint},
      {"fd-share", fd_share},                   {"streams-events", streams_events},
      {"param-info", param_info},               {"proc-address", proc_address},
      {"launch", launch},                       {"lock-blocks", lock_blocks},
      {"checkpoint-restore", checkpoint_restore}, {"checkpoint-errors", checkpoint_errors},
      // PHOS_SIM_GPUS=2
      {"devices", devices},                     {"peer-access", peer_access},
      {"restore-remap", restore_remap},         {"ckpt-ctl-remap", ckpt_ctl_remap},
  };
  const std::vector<Check> children = {
      {"fd-share-child", [&] { fd_share_child(argc > 2 ? atoi(argv[2]) : -1); }},
      {"lock-child", lock_child},
      {"ckpt-child", ckpt_child},
      {"busy-child", busy_child},
      {"visible-child", visible_child},
      {"mgpu-child", mgpu_child},
  };
  std::string want = argc > 1 ? argv[1] : "all";
  for (const Check &c : children)
    if (want == c.name) {
      c.run();
      return g_failures ? 1 : 0;
    }
  int ran = 0, failed = 0;
  for (const Check &c : checks) {
    if (want != "all" && want != c.name) continue;
    int before = g_failures;
    c.run();
    ran++;
    bool ok = g_failures == before;
    failed += !ok;
    fprintf(stderr, "%s %s\n", ok ? "ok  " : "FAIL", c.name);
  }
  if (ran == 0) {
    fprintf(stderr, "unknown check %s\n", want.c_str());
    return 2;
  }
  fprintf(stderr, "%d/%d checks passed\n", ran - failed, ran);
  return failed ? 1 : 0;
}
