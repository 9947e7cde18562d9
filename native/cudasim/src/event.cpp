// Events: a record queues a Signal on the stream; queries, synchronisation, cross-stream waits and
// elapsed time read that Signal. A re-record replaces it, so waiters keep the record they saw.
#include <chrono>
#include <memory>
#include <mutex>

#include "stream.h"

struct CUevent_st {
  phos::cudasim::Magic magic = phos::cudasim::Magic::event;
  unsigned flags = 0;
  std::mutex m;
  std::shared_ptr<phos::cudasim::Signal> last;  // null until the first record
};

using namespace phos::cudasim;

namespace {

std::shared_ptr<Signal> last_record(CUevent h) {
  std::lock_guard lk(h->m);
  return h->last;
}

CUresult record(CUevent h, CUstream hs, bool ptsz) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (!has_magic(h, Magic::event)) return CUDA_ERROR_INVALID_HANDLE;
  CUstream_st *s;
  if (CUresult r = resolve_stream(hs, ptsz, &s)) return r;
  auto sig = std::make_shared<Signal>();
  {
    std::lock_guard lk(h->m);
    h->last = sig;
  }
  submit(s, [] {}, sig);
  return CUDA_SUCCESS;
}

CUresult wait_event(CUstream hs, CUevent h, unsigned flags, bool ptsz) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  if (!has_magic(h, Magic::event) || (flags & ~CU_EVENT_WAIT_EXTERNAL)) return CUDA_ERROR_INVALID_HANDLE;
  CUstream_st *s;
  if (CUresult r = resolve_stream(hs, ptsz, &s)) return r;
  auto sig = last_record(h);
  if (sig && !sig->is_done()) submit(s, [sig] { sig->wait(); });
  return CUDA_SUCCESS;
}

CUresult elapsed(float *ms, CUevent a, CUevent b) {
  if (CUresult r = require_init()) return r;
  if (!ms) return CUDA_ERROR_INVALID_VALUE;
  if (!has_magic(a, Magic::event) || !has_magic(b, Magic::event)) return CUDA_ERROR_INVALID_HANDLE;
  if ((a->flags | b->flags) & CU_EVENT_DISABLE_TIMING) return CUDA_ERROR_INVALID_HANDLE;
  auto sa = last_record(a), sb = last_record(b);
  if (!sa || !sb) return CUDA_ERROR_INVALID_HANDLE;
  if (!sa->is_done() || !sb->is_done()) return CUDA_ERROR_NOT_READY;
  std::chrono::duration<float, std::milli> d = sb->when - sa->when;
  *ms = d.count();
  return CUDA_SUCCESS;
}

}  // namespace

CUresult cuEventCreate(CUevent *ph, unsigned int flags) {
  CUSIM_API_ENTER();
  if (CUresult r = require_context()) return r;
  constexpr unsigned kKnown =
      CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS;
  if (!ph || (flags & ~kKnown)) return CUDA_ERROR_INVALID_VALUE;
  if (flags & CU_EVENT_INTERPROCESS) return CUDA_ERROR_NOT_SUPPORTED;
  auto *e = new CUevent_st;
  e->flags = flags;
  *ph = e;
  return CUDA_SUCCESS;
}

CUresult cuEventDestroy_v2(CUevent h) {
  if (CUresult r = require_init()) return r;
  if (!has_magic(h, Magic::event)) return CUDA_ERROR_INVALID_HANDLE;
  h->magic = Magic::dead;
  delete h;  // a pending record keeps its Signal alive on its own
  return CUDA_SUCCESS;
}

CUresult cuEventDestroy(CUevent h) { return cuEventDestroy_v2(h); }
CUresult cuEventRecord(CUevent h, CUstream s) { return record(h, s, false); }
CUresult cuEventRecord_ptsz(CUevent h, CUstream s) { return record(h, s, true); }
CUresult cuEventRecordWithFlags(CUevent h, CUstream s, unsigned int) { return record(h, s, false); }
CUresult cuEventRecordWithFlags_ptsz(CUevent h, CUstream s, unsigned int) { return record(h, s, true); }

CUresult cuEventQuery(CUevent h) {
  if (CUresult r = require_init()) return r;
  if (!has_magic(h, Magic::event)) return CUDA_ERROR_INVALID_HANDLE;
  auto sig = last_record(h);
  return !sig || sig->is_done() ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}

CUresult cuEventSynchronize(CUevent h) {
  CUSIM_API_ENTER();
  if (CUresult r = require_init()) return r;
  if (!has_magic(h, Magic::event)) return CUDA_ERROR_INVALID_HANDLE;
  if (auto sig = last_record(h)) sig->wait();
  return CUDA_SUCCESS;
}

CUresult cuEventElapsedTime(float *ms, CUevent a, CUevent b) { return elapsed(ms, a, b); }
CUresult cuEventElapsedTime_v2(float *ms, CUevent a, CUevent b) { return elapsed(ms, a, b); }

CUresult cuStreamWaitEvent(CUstream s, CUevent e, unsigned int f) { return wait_event(s, e, f, false); }
CUresult cuStreamWaitEvent_ptsz(CUstream s, CUevent e, unsigned int f) {
  return wait_event(s, e, f, true);
}
