// cuCheckpointProcessCheckpoint copies what the driver still holds on the device (after libphos's freeze,
// the context's own state: 360 MiB for a PyTorch training process on an H200) into host memory, in one
// anonymous mapping it makes with libc's mmap on its checkpoint thread (bench/gpu/mmap_shim.c saw a single
// mmap from libcuda of exactly the RssAnon growth). 79 % of that copy is whole zero pages
// (bench/gpu/residue_probe.py, newMappingZeroBytes), which CRIU would dump, move and restore page by page.
//
// So libphos interposes mmap: while the app is frozen, a large writable private anonymous mapping whose
// caller lies in the driver library is noted. After the driver checkpoint the agent writes a request into
// the mailbox below (process_vm_writev: the agent socket is closed while frozen, CRIU cannot dump it);
// the frozen link thread, which polls it, drops the zero pages of the noted mappings (MADV_DONTNEED: they
// read as zero again) and advises huge pages on them, so the driver's restore reads the dropped ranges as
// the huge zero page instead of faulting 4 KiB at a time. No app thread touches these mappings: they are
// the driver's, made and filled by its checkpoint thread before the request comes.
#include "driver-copy.h"

#include <dlfcn.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "driver.h"
#include "log.h"

namespace phos::hijack {
namespace {

constexpr size_t kPage = 4096;
// Smaller mappings are the driver's bookkeeping; the checkpoint copy is hundreds of MiB.
constexpr size_t kMinBytes = size_t{4} << 20;
constexpr int kMaxNoted = 16;
constexpr unsigned kScanThreads = 4;

// The driver library's loaded range, set at arm. The hook reads only atomics (no locks, no allocation:
// it runs inside every mmap of the process, the dynamic loader's and malloc's included).
std::atomic<uintptr_t> g_lo{0}, g_hi{0};
std::atomic<bool> g_armed{false};
std::atomic<int> g_noted{0};
std::atomic<uintptr_t> g_addr[kMaxNoted];
std::atomic<size_t> g_len[kMaxNoted];

// Written by the agent (word 0) and by us (words 1-3); volatile: another process writes it.
alignas(64) volatile uint64_t g_mailbox[4];

struct Range { uintptr_t base, lo, hi; };

int widen(dl_phdr_info* info, size_t, void* arg) {
  auto* r = static_cast<Range*>(arg);
  if (info->dlpi_addr != r->base) return 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD) continue;
    uintptr_t a = info->dlpi_addr + ph.p_vaddr, b = a + ph.p_memsz;
    if (!r->lo || a < r->lo) r->lo = a;
    if (b > r->hi) r->hi = b;
  }
  return 1;
}

void note(void* p, size_t len, int prot, int flags, int fd, const void* caller) {
  if (!g_armed.load(std::memory_order_acquire) || p == MAP_FAILED || len < kMinBytes || fd >= 0) return;
  if ((flags & (MAP_ANONYMOUS | MAP_PRIVATE)) != (MAP_ANONYMOUS | MAP_PRIVATE) || !(prot & PROT_WRITE)) return;
  auto ra = reinterpret_cast<uintptr_t>(caller);
  if (ra < g_lo.load(std::memory_order_relaxed) || ra >= g_hi.load(std::memory_order_relaxed)) return;
  int i = g_noted.fetch_add(1);
  if (i >= kMaxNoted) return;
  g_addr[i].store(reinterpret_cast<uintptr_t>(p), std::memory_order_relaxed);
  g_len[i].store(len, std::memory_order_release);
}

// A noted mapping that is unmapped (even in part) is forgotten: its addresses may be reused by the app.
void forget(uintptr_t a, size_t len) {
  int n = std::min(g_noted.load(), kMaxNoted);
  for (int i = 0; i < n; ++i) {
    uintptr_t b = g_addr[i].load(std::memory_order_relaxed);
    size_t l = g_len[i].load(std::memory_order_acquire);
    if (l && a < b + l && b < a + len) g_len[i].store(0, std::memory_order_release);
  }
}

bool zero_page(const uint8_t* p) {
  static const uint8_t kZero[kPage] = {};
  return memcmp(p, kZero, kPage) == 0;
}

// One slice of a mapping: drops its runs of resident zero pages. Returns the bytes dropped.
uint64_t shed_slice(uint8_t* base, const std::vector<unsigned char>& resident, size_t from, size_t to) {
  uint64_t dropped = 0;
  size_t run = to;  // start of the current zero run, or `to` when none
  auto flush = [&](size_t end) {
    if (run < end && madvise(base + run * kPage, (end - run) * kPage, MADV_DONTNEED) == 0) dropped += (end - run) * kPage;
    run = to;
  };
  for (size_t i = from; i < to; ++i) {
    if ((resident[i] & 1) && zero_page(base + i * kPage)) {
      if (run == to) run = i;
    } else {
      flush(i);
    }
  }
  flush(to);
  return dropped;
}

// Sheds one noted mapping; false when it is no longer mapped (mincore says ENOMEM): left alone.
bool shed_mapping(uintptr_t addr, size_t len, uint64_t* scanned, uint64_t* dropped) {
  size_t pages = len / kPage;
  std::vector<unsigned char> resident(pages);
  if (mincore(reinterpret_cast<void*>(addr), pages * kPage, resident.data()) != 0) return false;
  auto* base = reinterpret_cast<uint8_t*>(addr);
  std::atomic<uint64_t> out{0};
  std::vector<std::thread> ts;
  size_t per = (pages + kScanThreads - 1) / kScanThreads;
  for (unsigned t = 0; t < kScanThreads; ++t) {
    size_t from = t * per, to = std::min(pages, from + per);
    if (from < to) ts.emplace_back([&, from, to] { out += shed_slice(base, resident, from, to); });
  }
  for (std::thread& t : ts) t.join();
  madvise(base, pages * kPage, MADV_HUGEPAGE);  // advice only: the kernel may not do huge pages at all
  *scanned += pages * kPage;
  *dropped += out.load();
  return true;
}

void shed() {
  double t0 = now_ms();
  uint64_t scanned = 0, dropped = 0;
  int n = std::min(g_noted.load(), kMaxNoted);
  for (int i = 0; i < n; ++i) {
    size_t len = g_len[i].load(std::memory_order_acquire);
    if (len && !shed_mapping(g_addr[i].load(std::memory_order_relaxed), len, &scanned, &dropped))
      PHOS_LOG(warn, "driver copy: a noted mapping is gone; left alone");
  }
  g_mailbox[2] = scanned;
  g_mailbox[3] = dropped;
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  g_mailbox[1] = g_mailbox[0];  // done: the agent polls this word
  PHOS_LOG(info, "driver copy: %d mapping(s), %.1f of %.1f MiB were zero pages, dropped in %.2f ms", n,
           dropped / 1048576.0, scanned / 1048576.0, now_ms() - t0);
}

}  // namespace

bool driver_copy_arm() {
  for (int i = 0; i < 4; ++i) g_mailbox[i] = 0;
  g_noted.store(0);
  Dl_info info{};
  void* fn = reinterpret_cast<void*>(real(&Driver::cuInit));
  if (!fn || !dladdr(fn, &info) || !info.dli_fbase) return false;  // no driver loaded: nothing to note
  Range r{reinterpret_cast<uintptr_t>(info.dli_fbase), 0, 0};
  dl_iterate_phdr(widen, &r);
  if (!r.lo) return false;
  g_lo.store(r.lo, std::memory_order_relaxed);
  g_hi.store(r.hi, std::memory_order_relaxed);
  g_armed.store(true, std::memory_order_release);
  return true;
}

void driver_copy_disarm() { g_armed.store(false); }

uint64_t driver_copy_mailbox() { return reinterpret_cast<uint64_t>(&g_mailbox[0]); }

void driver_copy_wait(long ns) {
  // Polled finely: the agent waits on the answer inside the app's stall.
  constexpr long kTick = 200 * 1000;
  for (long left = ns; left > 0; left -= kTick) {
    if (g_armed.load(std::memory_order_acquire) && g_mailbox[0] != 0 && g_mailbox[1] != g_mailbox[0]) shed();
    timespec ts{0, std::min(left, kTick)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  }
}

}  // namespace phos::hijack

// The interposers. glibc's mmap64 is the same function on 64-bit targets. munmap only forgets notes.
namespace {
inline void* map_and_note(void* addr, size_t len, int prot, int flags, int fd, off_t off, const void* caller) {
  void* p = reinterpret_cast<void*>(syscall(SYS_mmap, addr, len, prot, flags, fd, off));
  phos::hijack::note(p, len, prot, flags, fd, caller);
  return p;
}
}  // namespace

extern "C" __attribute__((visibility("default"))) void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  return map_and_note(addr, len, prot, flags, fd, off, __builtin_return_address(0));
}

extern "C" __attribute__((visibility("default"))) void* mmap64(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  return map_and_note(addr, len, prot, flags, fd, off, __builtin_return_address(0));
}

extern "C" __attribute__((visibility("default"))) int munmap(void* addr, size_t len) {
  if (phos::hijack::g_armed.load(std::memory_order_acquire)) phos::hijack::forget(reinterpret_cast<uintptr_t>(addr), len);
  return static_cast<int>(syscall(SYS_munmap, addr, len));
}
