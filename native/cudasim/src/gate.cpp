// API gate (see gate.h). Fast path is two atomic operations; the mutex is only taken while closed.
// Entry increments `in_flight` before reading `closed` and close() sets `closed` before reading
// `in_flight` (both seq_cst), so either the caller sees the gate closed or close() sees the caller.
#include "gate.h"

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "internal.h"

namespace phos::cudasim {
namespace {

struct GateState {
  std::atomic<long> in_flight{0};
  std::atomic<bool> closed{false};
  std::mutex m;
  std::condition_variable cv;  // both directions: callers wait for open, close() waits for drain
};

GateState &g() {
  static GateState *s = new GateState;  // leaked: API calls may arrive during exit
  return *s;
}

thread_local int t_depth = 0;

void leave() {
  GateState &s = g();
  if (s.in_flight.fetch_sub(1) == 1 && s.closed.load()) {
    std::lock_guard lk(s.m);
    s.cv.notify_all();
  }
}

}  // namespace

ApiScope::ApiScope() : counted_(t_depth++ == 0) {
  if (!counted_) return;
  GateState &s = g();
  for (;;) {
    s.in_flight.fetch_add(1);
    if (!s.closed.load()) return;
    leave();
    std::unique_lock lk(s.m);
    s.cv.wait(lk, [&] { return !s.closed.load(); });
  }
}

ApiScope::~ApiScope() {
  t_depth--;
  if (counted_) leave();
}

namespace gate {

bool close(Deadline deadline) {
  GateState &s = g();
  std::unique_lock lk(s.m);
  s.closed.store(true);
  auto drained = [&] { return s.in_flight.load() == 0; };
  bool ok = deadline ? s.cv.wait_until(lk, *deadline, drained) : (s.cv.wait(lk, drained), true);
  if (!ok) {
    s.closed.store(false);
    s.cv.notify_all();
  }
  return ok;
}

void open() {
  GateState &s = g();
  std::lock_guard lk(s.m);
  s.closed.store(false);
  s.cv.notify_all();
}

bool is_closed() { return g().closed.load(); }

}  // namespace gate
}  // namespace phos::cudasim
