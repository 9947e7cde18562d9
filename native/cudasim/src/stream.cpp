// Stream objects, their worker threads, the default-stream rules and the stream API.
#include "stream.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "context.h"
#include "log.h"

namespace phos::cudasim {
namespace {

struct Registry {
  std::mutex m;
  std::vector<std::shared_ptr<CUstream_st>> streams;  // every live stream, legacy and per-thread too
  std::shared_ptr<CUstream_st> legacy;
};

Registry &reg() {
  static Registry *r = new Registry;  // leaked: workers may still run while the process exits
  return *r;
}

std::atomic<unsigned long long> g_next_stream_id{1};

void worker_loop(CUstream_st *s) {
  for (;;) {
    CUstream_st::Item item;
    {
      std::unique_lock lk(s->m);
      s->cv_work.wait(lk, [&] { return s->stopping || !s->queue.empty(); });
      if (s->queue.empty()) return;  // stopping and drained
      item = std::move(s->queue.front());
      s->queue.pop_front();
    }
    item.op();
    {
      std::lock_guard lk(s->m);
      s->completed++;
      s->cv_done.notify_all();
    }
    if (item.after) item.after->fire();
  }
}

std::shared_ptr<CUstream_st> make_stream(CUstream_st::Kind kind, unsigned flags, int priority) {
  auto s = std::make_shared<CUstream_st>();
  s->kind = kind;
  s->flags = flags;
  s->priority = priority;
  s->id = g_next_stream_id++;
  s->self = s;
  s->ctx = current_context() ? current_context() : primary_context(0);
  std::lock_guard lk(reg().m);
  reg().streams.push_back(s);
  return s;
}

// Removes `s` from the registry and stops its worker once the queue is drained.
void retire(const std::shared_ptr<CUstream_st> &s) {
  {
    std::lock_guard lk(reg().m);
    std::erase(reg().streams, s);
  }
  {
    std::lock_guard lk(s->m);
    s->stopping = true;
    s->cv_work.notify_all();
  }
  if (!s->worker.joinable()) return;
  if (s->worker.get_id() == std::this_thread::get_id())
    s->worker.detach();  // destroyed from one of its own host functions
  else
    s->worker.join();
}

CUstream_st *legacy_stream() {
  Registry &r = reg();
  {
    std::lock_guard lk(r.m);
    if (r.legacy) return r.legacy.get();
  }
  auto s = make_stream(CUstream_st::Kind::legacy, 0, 0);
  std::lock_guard lk(r.m);
  if (!r.legacy) r.legacy = s;
  else std::erase(r.streams, s);  // lost a race: keep the first one
  return r.legacy.get();
}

// The calling thread's per-thread default stream; drained and retired when the thread exits.
struct PerThreadStream {
  std::shared_ptr<CUstream_st> s;
  ~PerThreadStream() {
    if (s) retire(s);
  }
};
thread_local PerThreadStream t_ptds;

CUstream_st *per_thread_stream() {
  if (!t_ptds.s) t_ptds.s = make_stream(CUstream_st::Kind::per_thread, 0, 0);
  return t_ptds.s.get();
}

std::vector<std::shared_ptr<CUstream_st>> snapshot_streams() {
  std::lock_guard lk(reg().m);
  return reg().streams;
}

// The ops `s` must wait for before running anything newly submitted (CUDA's implicit sync).
std::vector<std::pair<std::shared_ptr<CUstream_st>, uint64_t>> implicit_deps(CUstream_st *s) {
  std::vector<std::pair<std::shared_ptr<CUstream_st>, uint64_t>> deps;
  if (s->kind == CUstream_st::Kind::legacy) {
    for (auto &t : snapshot_streams()) {
      if (t.get() == s || !t->blocking()) continue;
      if (uint64_t seq = t->pending_seq()) deps.emplace_back(t, seq);
    }
  } else if (s->blocking()) {
    CUstream_st *l = legacy_stream();
    if (uint64_t seq = l->pending_seq()) deps.emplace_back(l->self.lock(), seq);
  }
  return deps;
}

}  // namespace

void Signal::fire() {
  std::lock_guard lk(m);
  when = std::chrono::steady_clock::now();
  done = true;
  cv.notify_all();
}

void Signal::wait() {
  std::unique_lock lk(m);
  cv.wait(lk, [&] { return done; });
}

bool Signal::is_done() {
  std::lock_guard lk(m);
  return done;
}

CUresult resolve_stream(CUstream h, bool per_thread, CUstream_st **out) {
  if (h == CU_STREAM_LEGACY || (h == nullptr && !per_thread)) {
    *out = legacy_stream();
  } else if (h == CU_STREAM_PER_THREAD || h == nullptr) {
    *out = per_thread_stream();
  } else if (has_magic(h, Magic::stream)) {
    *out = h;
  } else {
    return CUDA_ERROR_INVALID_HANDLE;
  }
  return CUDA_SUCCESS;
}

uint64_t submit(CUstream_st *s, CUstream_st::Op op, std::shared_ptr<Signal> after) {
  auto deps = implicit_deps(s);
  if (!deps.empty()) {
    op = [deps = std::move(deps), inner = std::move(op)] {
      for (auto &[t, seq] : deps) t->wait_for(seq);
      inner();
    };
  }
  std::lock_guard lk(s->m);
  if (!s->worker.joinable() && !s->stopping) s->worker = std::thread(worker_loop, s);
  s->queue.push_back(CUstream_st::Item{std::move(op), std::move(after)});
  s->cv_work.notify_one();
  return ++s->enqueued;
}

void submit_and_wait(CUstream_st *s, CUstream_st::Op op) { s->wait_for(submit(s, std::move(op))); }

CUresult synchronize_all_streams() {
  for (auto &s : snapshot_streams()) s->wait_for(s->pending_seq());
  return CUDA_SUCCESS;
}

bool wait_all_streams_idle(gate::Deadline deadline) {
  for (auto &s : snapshot_streams())
    if (!s->wait_idle_until(deadline)) return false;
  return true;
}

}  // namespace phos::cudasim

void CUstream_st::wait_for(uint64_t seq) {
  if (seq == 0) return;
  std::unique_lock lk(m);
  cv_done.wait(lk, [&] { return completed >= seq; });
}

bool CUstream_st::wait_idle_until(phos::cudasim::gate::Deadline deadline) {
  std::unique_lock lk(m);
  auto idle = [&] { return completed >= enqueued; };
  if (!deadline) {
    cv_done.wait(lk, idle);
    return true;
  }
  return cv_done.wait_until(lk, *deadline, idle);
}

uint64_t CUstream_st::pending_seq() {
  std::lock_guard lk(m);
  return completed < enqueued ? enqueued : 0;
}

// ---------------------------------------------------------------------------------------------
// Exported stream API
using namespace phos::cudasim;

namespace {

CUresult create(CUstream *ph, unsigned flags, int priority) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (!ph || (flags & ~CU_STREAM_NON_BLOCKING)) return CUDA_ERROR_INVALID_VALUE;
  priority = std::clamp(priority, kGreatestPriority, kLeastPriority);
  *ph = make_stream(CUstream_st::Kind::user, flags, priority).get();
  return CUDA_SUCCESS;
}

CUresult destroy(CUstream h) {
  CUSIM_API_ENTER();
  if (CUresult r = require_init()) return r;
  if (!has_magic(h, Magic::stream) || h->kind != CUstream_st::Kind::user)
    return CUDA_ERROR_INVALID_HANDLE;
  auto keep = h->self.lock();
  retire(keep);
  keep->magic = Magic::dead;
  return CUDA_SUCCESS;
}

CUresult sync(CUstream h, bool ptsz) {
  CUSIM_API_ENTER();
  if (CUresult r = require_init()) return r;
  CUstream_st *s;
  if (CUresult r = resolve_stream(h, ptsz, &s)) return r;
  s->wait_for(s->pending_seq());
  return CUDA_SUCCESS;
}

CUresult query(CUstream h, bool ptsz) {
  if (CUresult r = require_init()) return r;
  CUstream_st *s;
  if (CUresult r = resolve_stream(h, ptsz, &s)) return r;
  return s->pending_seq() ? CUDA_ERROR_NOT_READY : CUDA_SUCCESS;
}

CUresult host_func(CUstream h, CUhostFn fn, void *user, bool ptsz) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (!fn) return CUDA_ERROR_INVALID_VALUE;
  CUstream_st *s;
  if (CUresult r = resolve_stream(h, ptsz, &s)) return r;
  submit(s, [fn, user] { fn(user); });
  return CUDA_SUCCESS;
}

CUresult add_callback(CUstream h, CUstreamCallback cb, void *user, unsigned flags, bool ptsz) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (!cb || flags) return CUDA_ERROR_INVALID_VALUE;
  CUstream_st *s;
  if (CUresult r = resolve_stream(h, ptsz, &s)) return r;
  submit(s, [cb, h, user] { cb(h, CUDA_SUCCESS, user); });
  return CUDA_SUCCESS;
}

template <typename T, typename F>
CUresult get(CUstream h, bool ptsz, T *out, F field) {
  if (CUresult r = require_init()) return r;
  if (!out) return CUDA_ERROR_INVALID_VALUE;
  CUstream_st *s;
  if (CUresult r = resolve_stream(h, ptsz, &s)) return r;
  *out = field(s);
  return CUDA_SUCCESS;
}

CUresult is_capturing(CUstream h, CUstreamCaptureStatus *status, bool ptsz) {
  return get(h, ptsz, status, [](CUstream_st *) { return CU_STREAM_CAPTURE_STATUS_NONE; });
}

}  // namespace

CUresult cuStreamCreate(CUstream *ph, unsigned int flags) { return create(ph, flags, 0); }
CUresult cuStreamCreateWithPriority(CUstream *ph, unsigned int flags, int priority) {
  return create(ph, flags, priority);
}
CUresult cuStreamDestroy_v2(CUstream h) { return destroy(h); }
CUresult cuStreamDestroy(CUstream h) { return destroy(h); }
CUresult cuStreamSynchronize(CUstream h) { return sync(h, false); }
CUresult cuStreamSynchronize_ptsz(CUstream h) { return sync(h, true); }
CUresult cuStreamQuery(CUstream h) { return query(h, false); }
CUresult cuStreamQuery_ptsz(CUstream h) { return query(h, true); }
CUresult cuLaunchHostFunc(CUstream h, CUhostFn fn, void *u) { return host_func(h, fn, u, false); }
CUresult cuLaunchHostFunc_ptsz(CUstream h, CUhostFn fn, void *u) { return host_func(h, fn, u, true); }
CUresult cuStreamAddCallback(CUstream h, CUstreamCallback cb, void *u, unsigned int f) {
  return add_callback(h, cb, u, f, false);
}
CUresult cuStreamAddCallback_ptsz(CUstream h, CUstreamCallback cb, void *u, unsigned int f) {
  return add_callback(h, cb, u, f, true);
}
CUresult cuStreamGetPriority(CUstream h, int *p) {
  return get(h, false, p, [](CUstream_st *s) { return s->priority; });
}
CUresult cuStreamGetPriority_ptsz(CUstream h, int *p) {
  return get(h, true, p, [](CUstream_st *s) { return s->priority; });
}
CUresult cuStreamGetFlags(CUstream h, unsigned int *f) {
  return get(h, false, f, [](CUstream_st *s) { return s->flags; });
}
CUresult cuStreamGetFlags_ptsz(CUstream h, unsigned int *f) {
  return get(h, true, f, [](CUstream_st *s) { return s->flags; });
}
CUresult cuStreamGetId(CUstream h, unsigned long long *id) {
  return get(h, false, id, [](CUstream_st *s) { return s->id; });
}
CUresult cuStreamGetId_ptsz(CUstream h, unsigned long long *id) {
  return get(h, true, id, [](CUstream_st *s) { return s->id; });
}
CUresult cuStreamGetCtx(CUstream h, CUcontext *c) {
  return get(h, false, c, [](CUstream_st *s) { return s->ctx; });
}
CUresult cuStreamGetCtx_ptsz(CUstream h, CUcontext *c) {
  return get(h, true, c, [](CUstream_st *s) { return s->ctx; });
}
CUresult cuStreamGetDevice(CUstream h, CUdevice *d) {
  return get(h, false, d, [](CUstream_st *s) { return s->kind == CUstream_st::Kind::user ? s->ctx->device : current_device(); });
}
CUresult cuStreamGetDevice_ptsz(CUstream h, CUdevice *d) {
  return get(h, true, d, [](CUstream_st *s) { return s->kind == CUstream_st::Kind::user ? s->ctx->device : current_device(); });
}
CUresult cuStreamIsCapturing(CUstream h, CUstreamCaptureStatus *st) { return is_capturing(h, st, false); }
CUresult cuStreamIsCapturing_ptsz(CUstream h, CUstreamCaptureStatus *st) {
  return is_capturing(h, st, true);
}
CUresult cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode *mode) {
  return mode ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;  // never capturing: the mode is irrelevant
}
