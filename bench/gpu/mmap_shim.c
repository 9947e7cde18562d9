// Probe shim (LD_PRELOAD into residue_probe.py's target): logs every anonymous private mmap of 1 MiB or
// more with the object its caller lies in, and when PHOS_SHIM_THP=1 advises huge pages on them. It
// answers two questions for the driver checkpoint's host copy: does the driver map it through libc's
// mmap (so a preloaded library sees it), and does faulting it in 2 MiB pages make the checkpoint faster.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
  void *p = (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
  if (p != MAP_FAILED && fd < 0 && (flags & MAP_ANONYMOUS) && (flags & MAP_PRIVATE) && len >= (1u << 20)) {
    Dl_info info = {0};
    const char *who = dladdr(__builtin_return_address(0), &info) && info.dli_fname ? info.dli_fname : "?";
    static int thp = -1;
    if (thp < 0) thp = getenv("PHOS_SHIM_THP") && getenv("PHOS_SHIM_THP")[0] == '1';
    int rc = thp ? madvise(p, len, MADV_HUGEPAGE) : 0;
    fprintf(stderr, "shim-mmap %p %zu %s thp=%d rc=%d tid=%ld\n", p, len, who, thp, rc, (long)syscall(SYS_gettid));
  }
  return p;
}
void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) __attribute__((alias("mmap")));
