/* Raw TCP baseline for bench/pccl.ts: the same bytes over the same number of streams with nothing but
 * send()/recv() — no headers, hashes, acks or pacing. Source and destination are MAP_SHARED mappings of
 * files (as pccl's memfd maps), touched before timing, exactly as the pccl runs are warmed.
 *   pccl-raw recv PORT STREAMS DST_FILE BYTES          (prints "port N" once listening)
 *   pccl-raw send HOST PORT STREAMS SRC_FILE BYTES RUNS (prints one "run MS" line per run)
 * Each run: every stream sends an 8-byte length then its share of [0, BYTES); the receiver answers one
 * byte per stream when its share is in, so a run's time covers the last byte landing. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint8_t *map_file(const char *path, uint64_t size, int writable) {
  int fd = open(path, writable ? O_RDWR : O_RDONLY);
  if (fd < 0) { perror(path); exit(1); }
  uint8_t *p = mmap(NULL, size, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) { perror("mmap"); exit(1); }
  close(fd);
  volatile uint8_t sink = 0;
  for (uint64_t o = 0; o < size; o += 4096) {
    if (writable) p[o] = p[o];
    else sink ^= p[o];
  }
  (void)sink;
  return p;
}

static int full(int fd, void *buf, size_t n, int sending) {
  uint8_t *p = buf;
  while (n) {
    ssize_t r = sending ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, MSG_WAITALL);
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

struct job { int fd; uint8_t *base; uint64_t off, len; };

static void *recv_stream(void *arg) {
  struct job *j = arg;
  for (;;) {
    uint64_t len, off;
    if (full(j->fd, &off, 8, 0) || full(j->fd, &len, 8, 0)) return NULL;
    for (uint64_t d = 0; d < len;) {
      size_t n = len - d > (2u << 20) ? (2u << 20) : len - d;
      if (full(j->fd, j->base + off + d, n, 0)) return NULL;
      d += n;
    }
    uint8_t one = 1;
    if (full(j->fd, &one, 1, 1)) return NULL;
  }
}

static void *send_stream(void *arg) {
  struct job *j = arg;
  uint8_t one;
  if (full(j->fd, &j->off, 8, 1) || full(j->fd, &j->len, 8, 1) || full(j->fd, j->base + j->off, j->len, 1) ||
      full(j->fd, &one, 1, 0)) {
    fprintf(stderr, "stream failed\n");
    exit(1);
  }
  return NULL;
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  if (argc >= 6 && !strcmp(argv[1], "recv")) {
    int port = atoi(argv[2]), streams = atoi(argv[3]);
    uint64_t size = strtoull(argv[5], NULL, 10);
    uint8_t *dst = map_file(argv[4], size, 1);
    int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    socklen_t al = sizeof a;
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 64)) { perror("listen"); return 1; }
    getsockname(ls, (struct sockaddr *)&a, &al);
    printf("port %d\n", ntohs(a.sin_port));
    fflush(stdout);
    pthread_t th[64];
    struct job jobs[64];
    for (int i = 0; i < streams; ++i) {
      jobs[i].fd = accept(ls, NULL, NULL);
      setsockopt(jobs[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      jobs[i].base = dst;
      pthread_create(&th[i], NULL, recv_stream, &jobs[i]);
    }
    for (int i = 0; i < streams; ++i) pthread_join(th[i], NULL);
    return 0;
  }
  if (argc >= 8 && !strcmp(argv[1], "send")) {
    int port = atoi(argv[3]), streams = atoi(argv[4]), runs = atoi(argv[7]), one = 1;
    uint64_t size = strtoull(argv[6], NULL, 10);
    uint8_t *src = map_file(argv[5], size, 0);
    struct job jobs[64];
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, argv[2], &a.sin_addr);
    uint64_t share = size / streams;
    for (int i = 0; i < streams; ++i) {
      jobs[i].fd = socket(AF_INET, SOCK_STREAM, 0);
      setsockopt(jobs[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (connect(jobs[i].fd, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
      jobs[i].base = src;
      jobs[i].off = share * i;
      jobs[i].len = i == streams - 1 ? size - share * i : share;
    }
    for (int r = 0; r < runs; ++r) {
      pthread_t th[64];
      double t0 = now_ms();
      for (int i = 0; i < streams; ++i) pthread_create(&th[i], NULL, send_stream, &jobs[i]);
      for (int i = 0; i < streams; ++i) pthread_join(th[i], NULL);
      printf("run %.3f\n", now_ms() - t0);
      fflush(stdout);
    }
    return 0;
  }
  fprintf(stderr, "usage: pccl-raw recv PORT STREAMS DST_FILE BYTES | send HOST PORT STREAMS SRC_FILE BYTES RUNS\n");
  return 2;
}
