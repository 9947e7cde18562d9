// The call gate (freeze: block new API calls, wait for the ones in flight) and the on-demand gate (after a
// thaw with pending chunks: a launch or copy waits until the chunks it may touch are present). Both wait
// on plain futex-backed condition variables, so a CRIU-restored process resumes the waits as they were.
#pragma once
#include <atomic>
#include <cstdint>
#include <vector>

namespace phos::hijack {

/// One per app thread (a fixed pool; threads beyond it share one slot with atomic updates). `depth` counts
/// wrapped calls this thread is inside; the closer reads every slot after an asymmetric barrier.
struct alignas(64) GateSlot {
  std::atomic<uint32_t> depth{0};
  bool shared = false;
};

/// Non-zero while the freeze gate is closed (new wrapped calls block).
extern std::atomic<uint32_t> g_gate_closed;
/// Non-zero while chunks are pending after a thaw (the on-demand gate is armed).
extern std::atomic<uint32_t> g_ondemand;

GateSlot* gate_slot_slow();
void gate_block_slow(GateSlot* s);
extern thread_local GateSlot* t_gate_slot __attribute__((tls_model("initial-exec")));

/// Every wrapped entry point that can touch device memory holds one for its duration. Open gate: a
/// thread-local store, a compiler barrier and one relaxed load (the closer pays for the barrier).
class GateGuard {
 public:
  GateGuard() {
    s_ = t_gate_slot ? t_gate_slot : gate_slot_slow();
    inc();
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (__builtin_expect(g_gate_closed.load(std::memory_order_relaxed) != 0, 0)) gate_block_slow(s_);
  }
  ~GateGuard() {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    dec();
  }
  GateGuard(const GateGuard&) = delete;
  GateGuard& operator=(const GateGuard&) = delete;

 private:
  void inc() {
    if (__builtin_expect(s_->shared, 0)) s_->depth.fetch_add(1);
    else s_->depth.store(s_->depth.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  void dec() {
    if (__builtin_expect(s_->shared, 0)) s_->depth.fetch_sub(1);
    else s_->depth.store(s_->depth.load(std::memory_order_relaxed) - 1, std::memory_order_release);
  }
  GateSlot* s_;
};

/// Closes the gate and waits until no app thread is inside a wrapped call (threads blocked at the gate
/// or in the on-demand gate do not count). Returns false (gate reopened) if that took over `timeout_ms`.
/// Called from libphos's own thread only (never from inside a wrapped call).
bool gate_close(uint32_t timeout_ms);
/// Reopens the gate and wakes every blocked thread. Idempotent.
void gate_open();
bool gate_is_closed();

// ---- on-demand gate -----------------------------------------------------------------------------------
/// Marks `chunks` pending (index = (va - base) / 2 MiB) and arms the gate. `all_on_any`: every launch
/// waits for every pending chunk (pointer information unknown). Returns the number pending.
uint32_t ondemand_arm(const std::vector<uint32_t>& chunks, bool all_on_any);
/// Marks chunks present, wakes waiters; disarms when none are left. Returns how many are still pending.
uint32_t ondemand_present(const std::vector<uint32_t>& chunks);
/// Chunks still pending.
uint32_t ondemand_pending();
/// Releases every waiter and disarms (libphos gives up on the fill; logged by the caller).
void ondemand_release_all();
/// A copy or memset touches [va, va+len): waits for its pending chunks. pre: g_ondemand was seen set.
void ondemand_wait_range(uint64_t va, uint64_t len);
/// Two ranges (copy source and destination) in one wait.
void ondemand_wait_ranges(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen);
/// A launch may touch `chunks` (extents from launch tracking), or anything (`all`). pre: g_ondemand set.
void ondemand_wait_chunks(const std::vector<uint32_t>& chunks, bool all);

/// Statistics for tests and status.
struct GateStats {
  std::atomic<uint64_t> blocked{0};        ///< calls that blocked at the closed freeze gate
  std::atomic<uint64_t> ondemand_waits{0}; ///< launches/copies that waited for pending chunks
};
extern GateStats g_gate_stats;

}  // namespace phos::hijack
