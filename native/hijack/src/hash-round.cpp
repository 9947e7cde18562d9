// Hash-round driver: lazily loads the embedded PTX in the app's context, keeps its device buffers
// (digests of this and the previous round indexed by region chunk), and holds the VMM lock for the
// duration of a round so no chunk is unmapped while the GPU reads it.
#include "hash-round.h"

#include <algorithm>
#include <mutex>

#include "chunk-hash.h"
#include "driver.h"
#include "launch-track.h"
#include "log.h"
#include "vmm.h"

namespace phos::hijack {
namespace {

struct Helper {
  int state = 0;  // 0 not loaded, 1 ready, 2 failed
  CUmodule mod = nullptr;
  CUfunction fhash = nullptr, fcmp = nullptr;
  CUstream stream = nullptr;
  CUdeviceptr d_idx = 0, d_hashes = 0, d_prev = 0, d_ptrw = 0, d_changed = 0;
  uint32_t cap = 0;
};
Helper g_h;
std::mutex g_round_mu;
std::vector<uint32_t> g_carry;  // changed chunks of internal rounds, not yet reported (under g_round_mu)

#define PHOS_STEP(call, name)         \
  do {                                \
    CUresult r_ = (call);             \
    if (r_ != CUDA_SUCCESS) {         \
      out->err = r_;                  \
      out->what = name;               \
      return false;                   \
    }                                 \
  } while (0)

bool helper_init(uint32_t cap, HashRoundResult* out) {
  if (g_h.state == 1) return true;
  if (g_h.state == 2) { out->err = CUDA_ERROR_NOT_SUPPORTED; out->what = "hash helper unavailable"; return false; }
  g_h.state = 2;  // until proven otherwise
  if (!kChunkHashPtx[0]) { out->err = CUDA_ERROR_NOT_SUPPORTED; out->what = "built without nvcc: no helper PTX"; return false; }
  PHOS_STEP(PHOS_REAL(cuModuleLoadData, &g_h.mod, kChunkHashPtx), "cuModuleLoadData(helper PTX)");
  PHOS_STEP(PHOS_REAL(cuModuleGetFunction, &g_h.fhash, g_h.mod, PHOS_CHUNK_HASH_ENTRY), "cuModuleGetFunction(hash)");
  PHOS_STEP(PHOS_REAL(cuModuleGetFunction, &g_h.fcmp, g_h.mod, PHOS_CHUNK_COMPARE_ENTRY), "cuModuleGetFunction(compare)");
  int least = 0, greatest = 0;
  CUresult r = PHOS_REAL(cuCtxGetStreamPriorityRange, &least, &greatest);
  if (r == CUDA_SUCCESS) r = PHOS_REAL(cuStreamCreateWithPriority, &g_h.stream, CU_STREAM_NON_BLOCKING, least);
  if (r != CUDA_SUCCESS) PHOS_STEP(PHOS_REAL(cuStreamCreate, &g_h.stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  uint64_t c = cap;
  PHOS_STEP(PHOS_REAL(cuMemAlloc_v2, &g_h.d_idx, c * 4), "cuMemAlloc(idx)");
  PHOS_STEP(PHOS_REAL(cuMemAlloc_v2, &g_h.d_hashes, c * 8), "cuMemAlloc(hashes)");
  PHOS_STEP(PHOS_REAL(cuMemAlloc_v2, &g_h.d_prev, c * 8), "cuMemAlloc(prev)");
  PHOS_STEP(PHOS_REAL(cuMemAlloc_v2, &g_h.d_ptrw, c * 4), "cuMemAlloc(ptrwords)");
  PHOS_STEP(PHOS_REAL(cuMemAlloc_v2, &g_h.d_changed, c), "cuMemAlloc(changed)");
  vmm_note_internal(static_cast<int64_t>(c * 25));
  g_h.cap = cap;
  g_h.state = 1;
  PHOS_LOG(info, "hash helper loaded (%u chunk slots)", cap);
  return true;
}

bool round_locked(const RegionInfo& reg, HashRoundResult* out) {
  uint64_t base;
  uint32_t n;
  Chunk* c = chunks(&base, &n);
  if (!c) return true;
  if (!helper_init(n, out)) return false;
  std::vector<uint32_t> idx;
  for (uint32_t i = 0; i < n; ++i)
    if (c[i].users.load(std::memory_order_relaxed)) idx.push_back(i);
  uint32_t k = static_cast<uint32_t>(idx.size());
  out->hashed = k;
  if (!k) return true;
  CUstream s = g_h.stream;
  PHOS_STEP(PHOS_REAL(cuMemcpyHtoDAsync_v2, g_h.d_idx, idx.data(), k * 4ull, s), "upload chunk list");
  unsigned long long b = base, cb = kChunkBytes, lo = reg.base, hi = reg.base + reg.size;
  unsigned int kk = k;
  void* hp[] = {&b, &g_h.d_idx, &kk, &cb, &lo, &hi, &g_h.d_hashes, &g_h.d_ptrw};
  PHOS_STEP(PHOS_REAL(cuLaunchKernel, g_h.fhash, k, 1, 1, PHOS_CHUNK_HASH_THREADS, 1, 1, 0, s, hp, nullptr),
            "launch chunk hash");
  void* cp[] = {&g_h.d_idx, &kk, &g_h.d_hashes, &g_h.d_prev, &g_h.d_changed};
  unsigned grid = (k + PHOS_CHUNK_COMPARE_THREADS - 1) / PHOS_CHUNK_COMPARE_THREADS;
  PHOS_STEP(PHOS_REAL(cuLaunchKernel, g_h.fcmp, grid, 1, 1, PHOS_CHUNK_COMPARE_THREADS, 1, 1, 0, s, cp, nullptr),
            "launch chunk compare");
  std::vector<uint8_t> changed(k);
  std::vector<uint32_t> ptrw(k);
  std::vector<uint64_t> hashes(n);
  PHOS_STEP(PHOS_REAL(cuMemcpyDtoHAsync_v2, changed.data(), g_h.d_changed, k, s), "download changed");
  PHOS_STEP(PHOS_REAL(cuMemcpyDtoHAsync_v2, ptrw.data(), g_h.d_ptrw, k * 4ull, s), "download pointer counts");
  PHOS_STEP(PHOS_REAL(cuMemcpyDtoHAsync_v2, hashes.data(), g_h.d_hashes, n * 8ull, s), "download digests");
  PHOS_STEP(PHOS_REAL(cuStreamSynchronize, s), "synchronize helper stream");
  for (uint32_t j = 0; j < k; ++j) {
    Chunk& ch = c[idx[j]];
    bool fresh = ch.fresh.exchange(0, std::memory_order_relaxed);
    if (changed[j] || fresh) out->changed.push_back(idx[j]);
    ch.holds_ptrs.store(ptrw[j] ? 1 : 0, std::memory_order_relaxed);
    out->pointer_chunks += ptrw[j] ? 1 : 0;
    ch.last_hash = hashes[idx[j]];
  }
  return true;
}

bool hash_round_impl(HashRoundResult* out, bool internal);

}  // namespace

bool hash_round(HashRoundResult* out) { return hash_round_impl(out, false); }
bool hash_round_internal(HashRoundResult* out) { return hash_round_impl(out, true); }

namespace {

bool hash_round_impl(HashRoundResult* out, bool internal) {
  *out = HashRoundResult{};
  RegionInfo reg;
  if (!vmm_region(&reg)) return true;  // no region: nothing is tracked, nothing changed
  std::lock_guard<std::mutex> rl(g_round_mu);
  CUcontext prev = nullptr;
  PHOS_REAL(cuCtxGetCurrent, &prev);
  if (prev != reg.ctx && PHOS_REAL(cuCtxSetCurrent, reg.ctx) != CUDA_SUCCESS) {
    out->err = CUDA_ERROR_INVALID_CONTEXT;
    out->what = "set the app's context";
    return false;
  }
  // Never disturb an app capture in progress on another thread (interception.md §3.10).
  CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
  bool mode_set = PHOS_REAL(cuThreadExchangeStreamCaptureMode, &mode) == CUDA_SUCCESS;
  bool ok;
  {
    std::lock_guard<std::mutex> lk(vmm_lock());
    ok = round_locked(reg, out);
  }
  if (mode_set) PHOS_REAL(cuThreadExchangeStreamCaptureMode, &mode);
  if (prev != reg.ctx) PHOS_REAL(cuCtxSetCurrent, prev);
  if (ok && internal) {
    g_carry.insert(g_carry.end(), out->changed.begin(), out->changed.end());
  } else if (ok && !g_carry.empty()) {
    out->changed.insert(out->changed.end(), g_carry.begin(), g_carry.end());
    std::sort(out->changed.begin(), out->changed.end());
    out->changed.erase(std::unique(out->changed.begin(), out->changed.end()), out->changed.end());
    g_carry.clear();
  }
  if (!ok) PHOS_LOG_CAPPED(5, error, "hash round failed at '%s' (CUresult %d)", out->what, (int)out->err);
  return ok;
}

}  // namespace

}  // namespace phos::hijack
