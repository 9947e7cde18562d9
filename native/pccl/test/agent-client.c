/* Test client for the agent socket (pccl-agent-socket.test.ts), standing in for libphos: connects
 * SOCK_SEQPACKET to argv[1] (a path, or "@name": the Linux abstract socket name), sends the bytes of file argv[2] as one packet together with a memfd of
 * argv[3] bytes filled with byte i = (i * 131 + 7) & 0xff, then waits for one reply packet and prints
 * "reply <bytes> fds <n>" and, when an fd came with it, "fdtext <first line of the fd's content>".
 * Optional argv[4] breaks the protocol instead: "big" pads the packet to 1 MiB + 1 byte, "fds17" sends
 * 17 fds (copies of the memfd) with it. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int die(const char *what) {
  perror(what);
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) return fprintf(stderr, "usage: agent-client SOCK FRAMEFILE STAGING_BYTES [big|fds17]\n"), 2;
  const char *mode = argc == 5 ? argv[4] : "";
  size_t staging = strtoull(argv[3], NULL, 10);
  static unsigned char frame[(1 << 20) + 1];
  FILE *f = fopen(argv[2], "rb");
  if (!f) return die("frame file");
  size_t flen = fread(frame, 1, sizeof frame, f);
  fclose(f);

  int mfd = memfd_create("phos-staging", MFD_CLOEXEC);
  if (mfd < 0 || ftruncate(mfd, (off_t)staging) != 0) return die("memfd");
  unsigned char *p = mmap(NULL, staging, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  if (p == MAP_FAILED) return die("mmap");
  for (size_t i = 0; i < staging; ++i) p[i] = (unsigned char)((i * 131 + 7) & 0xff);

  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {0};
  a.sun_family = AF_UNIX;
  socklen_t alen = sizeof a;
  if (argv[1][0] == '@') { /* abstract: NUL, then the name; its length is in addrlen */
    size_t n = strnlen(argv[1] + 1, sizeof a.sun_path - 1);
    memcpy(a.sun_path + 1, argv[1] + 1, n);
    alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
  } else {
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
  }
  if (connect(s, (struct sockaddr *)&a, alen) != 0) return die("connect");

  int nfd = 1, fds[17];
  for (int i = 0; i < 17; ++i) fds[i] = mfd;
  if (strcmp(mode, "big") == 0) {
    flen = sizeof frame;
    int sz = 4 << 20;  /* a datagram must fit the sender's buffer */
    if (setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) != 0) return die("SO_SNDBUFFORCE");
  }
  if (strcmp(mode, "fds17") == 0) nfd = 17;
  struct iovec iov = {frame, flen};
  union { char buf[CMSG_SPACE(17 * sizeof(int))]; struct cmsghdr align; } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct msghdr m = {0};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl.buf;
  m.msg_controllen = CMSG_SPACE(nfd * sizeof(int));
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(nfd * sizeof(int));
  memcpy(CMSG_DATA(c), fds, nfd * sizeof(int));
  if (sendmsg(s, &m, 0) != (ssize_t)flen) return die("sendmsg");
  printf("sent %zu fds %d\n", flen, nfd);
  fflush(stdout);

  static unsigned char reply[1 << 20];
  struct iovec riov = {reply, sizeof reply};
  union { char buf[CMSG_SPACE(16 * sizeof(int))]; struct cmsghdr align; } rctl;
  struct msghdr r = {0};
  r.msg_iov = &riov;
  r.msg_iovlen = 1;
  r.msg_control = rctl.buf;
  r.msg_controllen = sizeof rctl.buf;
  ssize_t n = recvmsg(s, &r, MSG_CMSG_CLOEXEC);
  if (n < 0) return die("recvmsg");
  int nfds = 0, fd = -1;
  for (struct cmsghdr *h = CMSG_FIRSTHDR(&r); h; h = CMSG_NXTHDR(&r, h)) {
    if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
    nfds += (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    memcpy(&fd, CMSG_DATA(h), sizeof(int));
  }
  printf("reply %zd fds %d\n", n, nfds);
  if (fd >= 0) {
    char text[256] = {0};
    ssize_t k = pread(fd, text, sizeof text - 1, 0);
    if (k < 0) return die("pread");
    text[strcspn(text, "\n")] = 0;
    printf("fdtext %s\n", text);
  }
  return 0;
}
