// Streams: each stream is a FIFO of host closures run by its own worker thread (started on first
// use). Ordering between streams follows CUDA: the legacy default stream waits for all blocking
// streams and they wait for it; per-thread default streams are blocking streams private to a thread;
// CU_STREAM_NON_BLOCKING streams never synchronise implicitly.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "gate.h"
#include "internal.h"

namespace phos::cudasim {
struct Signal;
}

// No base class: the magic must be the first bytes of the object (see internal.h).
struct CUstream_st {
  enum class Kind { user, legacy, per_thread };
  using Op = std::function<void()>;

  phos::cudasim::Magic magic = phos::cudasim::Magic::stream;
  Kind kind = Kind::user;
  unsigned flags = 0;
  int priority = 0;
  unsigned long long id = 0;
  CUcontext ctx = nullptr;
  std::weak_ptr<CUstream_st> self;  // the registry's owner, for ops that must keep the stream alive

  std::mutex m;
  std::condition_variable cv_work;  // worker waits for ops
  std::condition_variable cv_done;  // waiters for `completed`
  struct Item {
    Op op;
    std::shared_ptr<phos::cudasim::Signal> after;  // fired once `completed` covers this op
  };
  std::deque<Item> queue;
  uint64_t enqueued = 0;   // ops ever submitted; op n is done once completed >= n
  uint64_t completed = 0;
  bool stopping = false;
  std::thread worker;

  bool blocking() const { return !(flags & CU_STREAM_NON_BLOCKING); }
  // Waits until op `seq` has run. pre: seq <= enqueued.
  void wait_for(uint64_t seq);
  bool wait_idle_until(phos::cudasim::gate::Deadline deadline);
  // Seq of the last submitted op if it has not run yet, else 0 (nothing to wait for).
  uint64_t pending_seq();
};

namespace phos::cudasim {

constexpr int kLeastPriority = 0;     // as reported by an H100/H200
constexpr int kGreatestPriority = -5;

// One-shot completion flag with a timestamp: what an event record leaves behind. Shared, so an
// event or a waiting stream keeps it alive after the recording stream is destroyed.
struct Signal {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::chrono::steady_clock::time_point when;
  void fire();
  void wait();
  bool is_done();
};

// Resolves a stream handle as the app passed it: 0 means the legacy stream, or the calling thread's
// per-thread stream when `per_thread` (the _ptsz/_ptds exports); CU_STREAM_LEGACY and
// CU_STREAM_PER_THREAD are honoured everywhere.
CUresult resolve_stream(CUstream handle, bool per_thread, CUstream_st **out);
// Queues `op` on `s` behind the implicit default-stream dependencies. Returns the op's seq.
// `after`, if given, fires once the op counts as completed on `s` (event records: a stream whose
// event has completed must itself read as done up to that point).
uint64_t submit(CUstream_st *s, CUstream_st::Op op, std::shared_ptr<Signal> after = nullptr);
// Queues `op` and waits for it: the synchronous copies and memsets.
void submit_and_wait(CUstream_st *s, CUstream_st::Op op);
CUresult synchronize_all_streams();
// Lock: waits until every stream has drained, or the deadline passes.
bool wait_all_streams_idle(gate::Deadline deadline);

}  // namespace phos::cudasim
