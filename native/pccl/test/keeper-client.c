/* Test app for the keeper (pccl-keeper.test.ts), standing in for libphos on cudasim (or a GPU):
 *   1. creates SIZE bytes of device memory with a POSIX-fd shareable handle, maps it, fills word i
 *      (8 bytes, little-endian) with i * 0x9E3779B97F4A7C15 ^ 0xA5, exports the fd and sends it to the
 *      agent socket with the packet "alloc";
 *   2. waits for a packet; then reads its own mapping (which the keeper may have written through its
 *      second reference) and prints "seen <hex hash of the first 8 words>" plus "sum <sum of words>";
 *   3. drops its own mapping and handle (as freeze does), imports the fd that came with that packet,
 *      maps it at a new VA, prints "reimported sum <sum of words>", answers "done" and exits 0.
 * Every failure prints "FAIL <call> <CUresult>" and exits 1. */
#include <cuda.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CK(x)                                                \
  do {                                                       \
    CUresult e_ = (x);                                       \
    if (e_ != CUDA_SUCCESS) {                                \
      printf("FAIL %s %d\n", #x, (int)e_);                   \
      exit(1);                                               \
    }                                                        \
  } while (0)

static int send_pkt(int s, const char *text, int fd) {
  struct iovec iov = {(void *)text, strlen(text)};
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct msghdr m = {0};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (fd >= 0) {
    m.msg_control = ctl.buf;
    m.msg_controllen = sizeof ctl.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  return sendmsg(s, &m, 0) < 0 ? -1 : 0;
}

static int recv_fd(int s) {
  char buf[256];
  struct iovec iov = {buf, sizeof buf};
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
  struct msghdr m = {0};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl.buf;
  m.msg_controllen = sizeof ctl.buf;
  if (recvmsg(s, &m, MSG_CMSG_CLOEXEC) <= 0) return -2;
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  if (!c) return -1;
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return fd;
}

static CUdeviceptr map_handle(CUmemGenericAllocationHandle h, size_t size) {
  CUdeviceptr va = 0;
  CK(cuMemAddressReserve(&va, size, 0, 0, 0));
  CK(cuMemMap(va, size, 0, h, 0));
  CUmemAccessDesc a;
  memset(&a, 0, sizeof a);
  a.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  a.location.id = 0;
  a.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  CK(cuMemSetAccess(va, size, &a, 1));
  return va;
}

static uint64_t sum_words(CUdeviceptr va, size_t size, uint64_t *first) {
  uint64_t *h = malloc(size);
  CK(cuMemcpyDtoH(h, va, size));
  uint64_t sum = 0;
  for (size_t i = 0; i < size / 8; ++i) sum += h[i];
  if (first) *first = h[0];
  free(h);
  return sum;
}

int main(int argc, char **argv) {
  if (argc != 3) return fprintf(stderr, "usage: keeper-client SOCK SIZE\n"), 2;
  size_t size = strtoull(argv[2], NULL, 10);
  CK(cuInit(0));
  CUdevice dev;
  CK(cuDeviceGet(&dev, 0));
  CUcontext ctx;
  CK(cuDevicePrimaryCtxRetain(&ctx, dev));
  CK(cuCtxSetCurrent(ctx));

  CUmemAllocationProp prop;
  memset(&prop, 0, sizeof prop);
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = 0;
  prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  CUmemGenericAllocationHandle h;
  CK(cuMemCreate(&h, size, &prop, 0));
  CUdeviceptr va = map_handle(h, size);
  uint64_t *fill = malloc(size);
  for (size_t i = 0; i < size / 8; ++i) fill[i] = (uint64_t)i * 0x9E3779B97F4A7C15ULL ^ 0xA5;
  CK(cuMemcpyHtoD(va, fill, size));
  free(fill);
  int fd = -1;
  CK(cuMemExportToShareableHandle(&fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));

  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {0};
  a.sun_family = AF_UNIX;
  strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
  if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) return perror("connect"), 1;
  if (send_pkt(s, "alloc", fd) != 0) return perror("sendmsg"), 1;
  close(fd);
  printf("sent\n");
  fflush(stdout);

  int back = recv_fd(s);
  uint64_t first = 0;
  uint64_t sum = sum_words(va, size, &first);
  printf("seen first %016llx sum %016llx\n", (unsigned long long)first, (unsigned long long)sum);

  CK(cuMemUnmap(va, size));
  CK(cuMemRelease(h));
  if (back < 0) return printf("FAIL no fd in reply (%d)\n", back), 1;
  CUmemGenericAllocationHandle h2;
  CK(cuMemImportFromShareableHandle(&h2, (void *)(uintptr_t)back, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
  CUdeviceptr va2 = map_handle(h2, size);
  sum = sum_words(va2, size, &first);
  printf("reimported first %016llx sum %016llx\n", (unsigned long long)first, (unsigned long long)sum);
  fflush(stdout);
  if (send_pkt(s, "done", -1) != 0) return perror("sendmsg"), 1;
  CK(cuMemUnmap(va2, size));
  CK(cuMemRelease(h2));
  close(back);
  return 0;
}
