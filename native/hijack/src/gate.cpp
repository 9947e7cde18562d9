// The freeze gate and the on-demand gate. The freeze gate is asymmetric: app threads pay a thread-local
// store and a relaxed load; the closer pays a membarrier(2) (every running thread passes a full barrier)
// and then reads every thread's depth, so a thread that saw the gate open is seen as in flight.
// The on-demand gate keeps one byte per region chunk; waiters sleep on one condition variable.
#include "gate.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "agent-link.h"
#include "launch-track.h"
#include "log.h"

namespace phos::hijack {

std::atomic<uint32_t> g_gate_closed{0};
std::atomic<uint32_t> g_ondemand{0};
thread_local GateSlot* t_gate_slot __attribute__((tls_model("initial-exec"))) = nullptr;
GateStats g_gate_stats;

namespace {

constexpr uint32_t kSlots = 1024;
GateSlot g_slots[kSlots];
GateSlot g_shared_slot;
std::atomic<uint32_t> g_nslots{0};

// Both gates wait on this pair; pthread condition variables are futex waits that CRIU restores.
std::mutex& gate_mu() {
  static std::mutex* m = new std::mutex;
  return *m;
}
std::condition_variable& gate_cv() {
  static std::condition_variable* c = new std::condition_variable;
  return *c;
}

uint64_t mono_ms() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1000 + static_cast<uint64_t>(t.tv_nsec) / 1000000;
}

// A full barrier on every thread of the process: after it, a depth store that preceded a thread's load
// of the (still open) gate flag is visible here. Falls back to a grace period where membarrier is absent.
void asymmetric_barrier() {
  static int mode = -1;  // 1 private expedited, 2 global, 0 none
  if (mode < 0) {
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0) mode = 1;
    else if (syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) > 0) mode = 2;
    else mode = 0;
    if (mode == 0) PHOS_LOG(warn, "membarrier(2) unavailable: the freeze gate waits a 20 ms grace period instead");
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (mode == 1 && syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) return;
  if (mode == 2 && syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) == 0) return;
  timespec ts{0, 20 * 1000 * 1000};
  while (nanosleep(&ts, &ts) != 0) {}
}

uint32_t in_flight() {
  uint32_t n = std::min(g_nslots.load(std::memory_order_acquire), kSlots), k = 0;
  for (uint32_t i = 0; i < n; ++i) k += g_slots[i].depth.load(std::memory_order_acquire);
  return k + g_shared_slot.depth.load(std::memory_order_acquire);
}

// ---- on-demand state (under gate_mu) --------------------------------------------------------------------
std::unique_ptr<uint8_t[]> g_pending;  // one byte per region chunk
uint32_t g_npending = 0, g_nchunks = 0;
uint64_t g_base = 0;
std::atomic<bool> g_all_on_any{false};

// Drops this thread's depth while it sleeps, so a freeze can proceed past it.
template <typename Pred>
void sleep_until(std::unique_lock<std::mutex>& lk, Pred done) {
  GateSlot* s = t_gate_slot ? t_gate_slot : gate_slot_slow();
  uint32_t d = s->depth.load(std::memory_order_relaxed);
  if (s->shared) s->depth.fetch_sub(d ? 1 : 0);
  else s->depth.store(d ? d - 1 : 0, std::memory_order_release);
  gate_cv().wait(lk, done);
  if (s->shared) s->depth.fetch_add(d ? 1 : 0);
  else s->depth.store(d, std::memory_order_relaxed);
}

}  // namespace

GateSlot* gate_slot_slow() {
  uint32_t i = g_nslots.fetch_add(1, std::memory_order_acq_rel);
  GateSlot* s;
  if (i < kSlots) {
    s = &g_slots[i];
  } else {
    g_nslots.store(kSlots, std::memory_order_relaxed);
    g_shared_slot.shared = true;
    s = &g_shared_slot;
  }
  t_gate_slot = s;
  return s;
}

void gate_block_slow(GateSlot* s) {
  // Leave (as if the call had not started), wait for the gate to open, re-enter; the closer never sees
  // this thread as in flight. The loop re-checks after the barrier as the fast path does.
  g_gate_stats.blocked.fetch_add(1, std::memory_order_relaxed);
  for (;;) {
    std::unique_lock<std::mutex> lk(gate_mu());
    if (s->shared) s->depth.fetch_sub(1);
    else s->depth.store(s->depth.load(std::memory_order_relaxed) - 1, std::memory_order_release);
    gate_cv().notify_all();  // the closer may be waiting for this thread to leave
    gate_cv().wait(lk, [] { return g_gate_closed.load(std::memory_order_acquire) == 0; });
    if (s->shared) s->depth.fetch_add(1);
    else s->depth.store(s->depth.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    lk.unlock();
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (g_gate_closed.load(std::memory_order_relaxed) == 0) return;
  }
}

bool gate_close(uint32_t timeout_ms) {
  g_gate_closed.store(1, std::memory_order_seq_cst);
  asymmetric_barrier();
  uint64_t deadline = mono_ms() + timeout_ms;
  std::unique_lock<std::mutex> lk(gate_mu());
  while (in_flight() != 0) {
    if (mono_ms() > deadline) {
      lk.unlock();
      PHOS_LOG(error, "freeze gate: %u app call(s) still inside the driver after %u ms; reopening", in_flight(),
               timeout_ms);
      gate_open();
      return false;
    }
    gate_cv().wait_for(lk, std::chrono::milliseconds(1));
  }
  return true;
}

void gate_open() {
  std::lock_guard<std::mutex> lk(gate_mu());
  g_gate_closed.store(0, std::memory_order_release);
  gate_cv().notify_all();
}

bool gate_is_closed() { return g_gate_closed.load(std::memory_order_acquire) != 0; }

// ---- on-demand gate ---------------------------------------------------------------------------------------

uint32_t ondemand_arm(const std::vector<uint32_t>& chunks_in, bool all_on_any) {
  uint64_t base;
  uint32_t n;
  chunks(&base, &n);
  std::lock_guard<std::mutex> lk(gate_mu());
  if (!g_pending || g_nchunks != n) {
    g_pending.reset(new (std::nothrow) uint8_t[n ? n : 1]());
    g_nchunks = g_pending ? n : 0;
    g_npending = 0;
  }
  g_base = base;
  for (uint32_t c : chunks_in)
    if (c < g_nchunks && !g_pending[c]) g_pending[c] = 1, ++g_npending;
  g_all_on_any.store(all_on_any, std::memory_order_relaxed);
  g_ondemand.store(g_npending ? 1 : 0, std::memory_order_release);
  return g_npending;
}

uint32_t ondemand_present(const std::vector<uint32_t>& chunks_in) {
  std::lock_guard<std::mutex> lk(gate_mu());
  for (uint32_t c : chunks_in)
    if (c < g_nchunks && g_pending[c]) g_pending[c] = 0, --g_npending;
  if (g_npending == 0) g_ondemand.store(0, std::memory_order_release);
  gate_cv().notify_all();
  return g_npending;
}

uint32_t ondemand_pending() {
  std::lock_guard<std::mutex> lk(gate_mu());
  return g_npending;
}

void ondemand_release_all() {
  std::lock_guard<std::mutex> lk(gate_mu());
  for (uint32_t i = 0; i < g_nchunks; ++i) g_pending[i] = 0;
  g_npending = 0;
  g_ondemand.store(0, std::memory_order_release);
  gate_cv().notify_all();
}

namespace {

// Waits until none of `want` is pending (all: no chunk at all); tells the agent once which ones it waits for.
void wait_for(std::vector<uint32_t>& want, bool all) {
  std::unique_lock<std::mutex> lk(gate_mu());
  if (g_npending == 0) return;
  if (all) {
    want.clear();
    for (uint32_t i = 0; i < g_nchunks && want.size() < 4096; ++i)
      if (g_pending[i]) want.push_back(i);
    all = true;
  } else {
    std::erase_if(want, [](uint32_t c) { return c >= g_nchunks || !g_pending[c]; });
  }
  if (want.empty()) return;
  g_gate_stats.ondemand_waits.fetch_add(1, std::memory_order_relaxed);
  lk.unlock();
  agent_send_event("gate-wait", want);
  lk.lock();
  PHOS_LOG(debug, "on-demand gate: waiting for %zu chunk(s)%s", want.size(), all ? " (all pending)" : "");
  if (all) sleep_until(lk, [] { return g_npending == 0; });
  else
    sleep_until(lk, [&] {
      for (uint32_t c : want)
        if (c < g_nchunks && g_pending[c]) return false;
      return true;
    });
}

void add_range(std::vector<uint32_t>* out, uint64_t va, uint64_t len) {
  if (len == 0 || va < g_base) return;
  uint64_t first = (va - g_base) >> kChunkShift, last = (va + len - 1 - g_base) >> kChunkShift;
  for (uint64_t c = first; c <= last && c < g_nchunks; ++c) out->push_back(static_cast<uint32_t>(c));
}

}  // namespace

void ondemand_wait_range(uint64_t va, uint64_t len) { ondemand_wait_ranges(va, len, 0, 0); }

void ondemand_wait_ranges(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
  std::vector<uint32_t> want;
  add_range(&want, a, alen);
  add_range(&want, b, blen);
  if (want.empty()) return;
  wait_for(want, false);
}

void ondemand_wait_chunks(const std::vector<uint32_t>& chunks_in, bool all) {
  std::vector<uint32_t> want(chunks_in);
  wait_for(want, all || g_all_on_any.load(std::memory_order_relaxed));
}

}  // namespace phos::hijack
