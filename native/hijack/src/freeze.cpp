// Freeze/thaw/snapshot/rollback/gate ops (DESIGN "Process lifecycle"; the contract is the header of
// proto/src/frames.ts). Every op runs on the agent-link thread with the region's context current and
// relaxed capture mode; any failure reopens the gate and answers ok: false, so the app carries on.
#include "freeze.h"

#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <string>

#include "agent-link.h"
#include "driver-copy.h"
#include "driver.h"
#include "frames.h"
#include "gate.h"
#include "hash-round.h"
#include "launch-track.h"
#include "log.h"
#include "msgpack.h"
#include "vmm.h"

namespace phos::hijack {
namespace {

constexpr uint32_t kDrainTimeoutMs = 10000;  // app calls still inside the driver when a freeze starts

std::atomic<bool> g_frozen{false};
bool g_launch_all = false;          // the freeze's pointer scan failed: launches wait for every pending chunk
std::vector<uint32_t> g_stash;      // pending chunks of thaw frames before the last one
CUstream g_stream = nullptr;        // libphos's own copy stream (snapshot)

// Each context's per-thread stack limit as the app had it, while a freeze holds it at 0 (see shrink_stacks).
struct StackLimit {
  CUcontext ctx;
  size_t bytes;
};
std::vector<StackLimit> g_stacks;

// The region's context on this thread and relaxed capture mode (never disturb an app capture), for the
// duration of one op.
class OpScope {
 public:
  OpScope() {
    RegionInfo reg;
    if (vmm_region(&reg)) {
      PHOS_REAL(cuCtxGetCurrent, &prev_);
      if (prev_ != reg.ctx) PHOS_REAL(cuCtxSetCurrent, reg.ctx);
      ctx_ = reg.ctx;
    }
    mode_set_ = PHOS_REAL(cuThreadExchangeStreamCaptureMode, &mode_) == CUDA_SUCCESS;
  }
  ~OpScope() {
    if (mode_set_) PHOS_REAL(cuThreadExchangeStreamCaptureMode, &mode_);
    if (ctx_ && prev_ != ctx_) PHOS_REAL(cuCtxSetCurrent, prev_);
  }
  bool has_region() const { return ctx_ != nullptr; }

 private:
  CUcontext prev_ = nullptr, ctx_ = nullptr;
  CUstreamCaptureMode mode_ = CU_STREAM_CAPTURE_MODE_RELAXED;
  bool mode_set_ = false;
};

void rep_ok(uint64_t id, double t0, int64_t bytes = -1, int64_t remaining = -1, int64_t pending = -1,
            const std::vector<std::string>* gpus = nullptr, const std::vector<uint32_t>* changed = nullptr,
            uint64_t shed = 0) {
  msgpack::Writer w;
  bool g = gpus && !gpus->empty();
  uint32_t n = 2 + (t0 >= 0 ? 1 : 0) + (bytes >= 0) + (remaining >= 0) + (pending >= 0) + (g ? 1 : 0) + (changed ? 1 : 0) +
               (shed ? 1 : 0);
  frame_begin(w, PHOS_FRAME_REP, n);
  w.kv(PHOS_F_REP_ID, id);
  w.kvb(PHOS_F_REP_OK, true);
  if (t0 >= 0) {
    w.str("ms");
    w.f64(now_ms() - t0);
  }
  if (bytes >= 0) w.kv("bytes", static_cast<uint64_t>(bytes));
  if (remaining >= 0) w.kv("remaining", static_cast<uint64_t>(remaining));
  if (pending >= 0) w.kv("pending", static_cast<uint64_t>(pending));
  if (g) {
    w.str("gpus");
    w.array(static_cast<uint32_t>(gpus->size()));
    for (const std::string& u : *gpus) w.str(u);
  }
  if (changed) {
    w.str("changed");
    w.array(static_cast<uint32_t>(changed->size()));
    for (uint32_t c : *changed) w.uint(c);
  }
  if (shed) w.kv("shed", shed);
  agent_send(w, -1);
}

std::string cu_err(const char* what, CUresult r) { return std::string(what) + " failed: CUresult " + std::to_string(r); }

// Synchronises the current (region) context and every other device's context the app allocated in:
// a freeze drops the memory of all devices together, so work on each must be done. The region's
// context is current again afterwards.
CUresult drain_devices() {
  CUcontext cur = nullptr;
  PHOS_REAL(cuCtxGetCurrent, &cur);
  CUresult r = PHOS_REAL(cuCtxSynchronize);
  for (CUcontext c : vmm_device_contexts()) {
    if (r != CUDA_SUCCESS || c == cur) continue;
    if ((r = PHOS_REAL(cuCtxSetCurrent, c)) == CUDA_SUCCESS) r = PHOS_REAL(cuCtxSynchronize);
  }
  PHOS_REAL(cuCtxSetCurrent, cur);
  return r;
}

// Closes the gate and waits for the GPU to finish everything the app queued. On failure the gate is open
// again and `err` says why.
bool block_and_drain(const char** code, std::string* err) {
  if (!gate_close(kDrainTimeoutMs)) {
    *code = PHOS_ERR_TIMEOUT;
    *err = "app calls still inside the driver after " + std::to_string(kDrainTimeoutMs) + " ms";
    return false;
  }
  CUresult r = drain_devices();
  if (r != CUDA_SUCCESS) {
    gate_open();
    *code = PHOS_ERR_DRIVER_FAILED;
    *err = cu_err("cuCtxSynchronize (drain)", r) +
           (r == CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED ? " (a stream capture is in progress; retry later)" : "");
    return false;
  }
  return true;
}

// Copies each listed allocation into the spare memory behind the matching fd (the consistent point of a
// snapshot). pre: blocked and drained. Adds the bytes copied to `bytes`.
bool copy_to_spares(const std::vector<uint64_t>& ids, const std::vector<int>& fds, uint64_t* bytes, std::string* err) {
  if (ids.size() != fds.size()) {
    *err = std::to_string(ids.size()) + " allocIds but " + std::to_string(fds.size()) + " fds";
    return false;
  }
  if (!g_stream && PHOS_REAL(cuStreamCreate, &g_stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS) {
    g_stream = nullptr;
    *err = "cannot create libphos's copy stream";
    return false;
  }
  struct Tmp { CUdeviceptr va; uint64_t size; CUmemGenericAllocationHandle h; bool mapped; };
  std::vector<Tmp> tmps;
  bool ok = true;
  for (size_t i = 0; i < ids.size() && ok; ++i) {
    uint64_t size = 0;
    bool slab = false;
    if (!vmm_alloc_info(ids[i], &size, &slab)) {
      *err = "allocation id " + std::to_string(ids[i]) + " is unknown";
      ok = false;
      break;
    }
    Tmp t{0, size, 0, false};
    CUresult r = PHOS_REAL(cuMemImportFromShareableHandle, &t.h, reinterpret_cast<void*>(static_cast<intptr_t>(fds[i])),
                           CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
    if (r != CUDA_SUCCESS) { *err = cu_err("cuMemImportFromShareableHandle(spare)", r); ok = false; break; }
    r = PHOS_REAL(cuMemAddressReserve, &t.va, size, 0, 0, 0);
    if (r != CUDA_SUCCESS) {
      PHOS_REAL(cuMemRelease, t.h);
      *err = cu_err("cuMemAddressReserve(spare)", r);
      ok = false;
      break;
    }
    tmps.push_back(t);
    r = PHOS_REAL(cuMemMap, t.va, size, 0, t.h, 0);
    if (r != CUDA_SUCCESS) { *err = cu_err("cuMemMap(spare; is it smaller than the allocation?)", r); ok = false; break; }
    tmps.back().mapped = true;
    RegionInfo reg;
    vmm_region(&reg);
    CUmemAccessDesc acc{};
    acc.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    acc.location.id = reg.dev;
    acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    r = PHOS_REAL(cuMemSetAccess, t.va, size, &acc, 1);
    if (r != CUDA_SUCCESS) { *err = cu_err("cuMemSetAccess(spare)", r); ok = false; break; }
    if (vmm_copy_out(ids[i], t.va, size, g_stream, bytes, err) != 0) ok = false;
  }
  CUresult r = PHOS_REAL(cuStreamSynchronize, g_stream);
  if (ok && r != CUDA_SUCCESS) { *err = cu_err("cuStreamSynchronize(copy stream)", r); ok = false; }
  for (auto& t : tmps) {
    if (t.mapped) PHOS_REAL(cuMemUnmap, t.va, t.size);
    PHOS_REAL(cuMemAddressFree, t.va, t.size);
    PHOS_REAL(cuMemRelease, t.h);
  }
  return ok;
}

// The driver backs each context's per-thread stack for every thread the GPU can hold (on an H200, 1 KiB
// x 2048 threads x 132 SMs: 264 MiB), and its checkpoint copies that scratch to host memory like anything
// else, where CRIU dumps it again. Between kernels it holds nothing, so a freeze sets the stack limit to
// 0 (the driver frees the backing at once) and the thaw sets the app's value back (the driver allocates
// it again; a kernel that needs more grows it on its own, as always). On an H200 this takes a bare
// context's checkpoint from 591 to 327 MiB, 0.4 ms each way (bench/gpu/residue-probe.sh).
// A context that refuses keeps its stack: the checkpoint is just bigger.
void shrink_stacks() {
  g_stacks.clear();
  CUcontext cur = nullptr;
  PHOS_REAL(cuCtxGetCurrent, &cur);
  std::vector<CUcontext> ctxs = vmm_device_contexts();
  if (cur && std::find(ctxs.begin(), ctxs.end(), cur) == ctxs.end()) ctxs.push_back(cur);
  for (CUcontext c : ctxs) {
    size_t bytes = 0;
    if (PHOS_REAL(cuCtxSetCurrent, c) != CUDA_SUCCESS) continue;
    if (PHOS_REAL(cuCtxGetLimit, &bytes, CU_LIMIT_STACK_SIZE) != CUDA_SUCCESS || bytes == 0) continue;
    CUresult r = PHOS_REAL(cuCtxSetLimit, CU_LIMIT_STACK_SIZE, 0);
    if (r == CUDA_SUCCESS) g_stacks.push_back({c, bytes});
    else PHOS_LOG(warn, "freeze: cannot lower the stack limit (CUresult %d): the checkpoint copies it", (int)r);
  }
  PHOS_REAL(cuCtxSetCurrent, cur);
}

// Gives every context shrink_stacks lowered its stack limit back. A refusal (the GPU is full) does not
// hold the thaw: the app runs, and a launch that needs the stack grows it or fails as it would have.
void restore_stacks() {
  CUcontext cur = nullptr;
  PHOS_REAL(cuCtxGetCurrent, &cur);
  for (const StackLimit& s : g_stacks) {
    CUresult r = PHOS_REAL(cuCtxSetCurrent, s.ctx);
    if (r == CUDA_SUCCESS) r = PHOS_REAL(cuCtxSetLimit, CU_LIMIT_STACK_SIZE, s.bytes);
    if (r != CUDA_SUCCESS) PHOS_LOG(error, "thaw: cannot set the stack limit back to %zu B (CUresult %d)", s.bytes, (int)r);
  }
  PHOS_REAL(cuCtxSetCurrent, cur);
  g_stacks.clear();
}

std::vector<uint32_t> to_chunks(const std::vector<uint64_t>& v) {
  std::vector<uint32_t> out;
  out.reserve(v.size());
  for (uint64_t x : v)
    if (x <= UINT32_MAX) out.push_back(static_cast<uint32_t>(x));
  return out;
}

void op_snapshot(uint64_t id, const std::vector<uint64_t>& ids, const std::vector<int>& fds) {
  if (g_frozen.load()) return agent_rep_error(id, PHOS_ERR_ILLEGAL_STATE, "frozen: thaw first");
  double t0 = now_ms();
  OpScope scope;
  const char* code = nullptr;
  std::string err;
  if (!block_and_drain(&code, &err)) return agent_rep_error(id, code, err);
  uint64_t bytes = 0;
  bool ok = copy_to_spares(ids, fds, &bytes, &err);
  gate_open();
  if (!ok) {
    PHOS_LOG(error, "snapshot failed: %s; the app continues", err.c_str());
    return agent_rep_error(id, PHOS_ERR_DRIVER_FAILED, err);
  }
  PHOS_LOG(info, "snapshot: %llu bytes into spare memory in %.2f ms", (unsigned long long)bytes, now_ms() - t0);
  rep_ok(id, t0, static_cast<int64_t>(bytes));
}

void op_freeze(uint64_t id, const std::vector<uint64_t>& ids, const std::vector<int>& fds) {
  if (g_frozen.load()) return agent_rep_error(id, PHOS_ERR_ILLEGAL_STATE, "already frozen");
  double t0 = now_ms();
  OpScope scope;
  const char* code = nullptr;
  std::string err;
  if (!block_and_drain(&code, &err)) return agent_rep_error(id, code, err);
  uint64_t bytes = 0;
  std::vector<uint32_t> frozen_changed;
  if (!ids.empty() && !copy_to_spares(ids, fds, &bytes, &err)) {
    gate_open();
    PHOS_LOG(error, "freeze: snapshot copy failed: %s; the app continues", err.c_str());
    return agent_rep_error(id, PHOS_ERR_DRIVER_FAILED, err);
  }
  if (scope.has_region()) {
    // Which chunks hold device pointers decides, after a thaw, whether a launch may reach only its
    // parameters' chunks or anything: refresh it now, while the memory is still mapped.
    HashRoundResult hr;
    g_launch_all = !hash_round_internal(&hr);
    if (!g_launch_all) frozen_changed = hr.changed;
    if (g_launch_all) PHOS_LOG(warn, "freeze: pointer scan failed: after thaw every launch waits for all pending chunks");
    if (!vmm_drop(&err)) {
      gate_open();
      PHOS_LOG(error, "freeze: %s; the app continues", err.c_str());
      return agent_rep_error(id, PHOS_ERR_DRIVER_FAILED, err);
    }
  }
  g_stash.clear();
  shrink_stacks();
  bool shed = driver_copy_arm();
  g_frozen.store(true);
  PHOS_LOG(info, "frozen in %.2f ms (%u allocations dropped)", now_ms() - t0, vmm_dropped_count());
  // `changed`: chunks written since the agent's last hash round (absent when the round failed), so a
  // caller that copied the memory earlier copies only these while the app is frozen (same-node GPU move).
  // `shed`: the mailbox through which the agent asks, after the driver checkpoint, for the zero pages of
  // the driver's copy to be dropped (driver-copy.cpp).
  rep_ok(id, t0, ids.empty() ? -1 : static_cast<int64_t>(bytes), -1, -1, nullptr,
         scope.has_region() && !g_launch_all ? &frozen_changed : nullptr, shed ? driver_copy_mailbox() : 0);
  agent_close_for_freeze();
}

void op_thaw(uint64_t id, const std::vector<uint64_t>& ids, const std::vector<uint64_t>& pending,
             const std::vector<int>& fds) {
  if (!g_frozen.load()) return agent_rep_error(id, PHOS_ERR_ILLEGAL_STATE, "not frozen");
  if (ids.size() != fds.size())
    return agent_rep_error(id, PHOS_ERR_BAD_ARGS,
                           std::to_string(ids.size()) + " allocIds but " + std::to_string(fds.size()) + " fds");
  double t0 = now_ms();
  OpScope scope;
  for (size_t i = 0; i < ids.size(); ++i) {
    std::string err;
    int r = vmm_thaw_one(ids[i], fds[i], &err);
    if (r < 0) {
      PHOS_LOG(error, "thaw: %s; still frozen", err.c_str());
      return agent_rep_error(id, r == -2 ? PHOS_ERR_NOT_FOUND : PHOS_ERR_DRIVER_FAILED, err);
    }
  }
  auto p = to_chunks(pending);
  g_stash.insert(g_stash.end(), p.begin(), p.end());
  uint32_t remaining = vmm_dropped_count();
  if (remaining) {
    rep_ok(id, t0, -1, remaining);
    return;
  }
  restore_stacks();
  driver_copy_disarm();
  uint32_t armed = g_stash.empty() ? 0 : ondemand_arm(g_stash, g_launch_all);
  g_stash.clear();
  g_frozen.store(false);
  PHOS_LOG(info, "thawed in %.2f ms; %u chunk(s) pending", now_ms() - t0, armed);
  // The GPUs as the driver names them now: the resume hello came before the driver restore, which may
  // have moved this process onto other GPUs.
  std::vector<std::string> gpus = agent_gpu_uuids();
  rep_ok(id, t0, -1, 0, -1, &gpus);
  gate_open();
}

void op_gate(uint64_t id, const std::vector<uint64_t>& chunks) {
  auto c = to_chunks(chunks);
  uint32_t left;
  if (g_frozen.load()) {  // before the last thaw frame: not armed yet
    std::erase_if(g_stash, [&](uint32_t x) { return std::find(c.begin(), c.end(), x) != c.end(); });
    left = static_cast<uint32_t>(g_stash.size());
  } else {
    left = ondemand_present(c);
  }
  if (left == 0 && !g_frozen.load()) PHOS_LOG(info, "on-demand fill complete");
  rep_ok(id, -1, -1, -1, left);
}

void op_rollback(uint64_t id) {
  // Every op completes (or undoes itself) before its reply, so the only thing to undo is a gate left
  // closed. After a freeze the mappings are gone: only a thaw with the keeper's fds brings them back.
  if (g_frozen.load())
    return agent_rep_error(id, PHOS_ERR_ILLEGAL_STATE, "frozen and device mappings dropped: send thaw with the keeper's fds");
  gate_open();
  rep_ok(id, -1);
}

}  // namespace

bool freeze_frozen() { return g_frozen.load(std::memory_order_acquire); }
bool freeze_needs_agent() { return freeze_frozen() || g_ondemand.load(std::memory_order_acquire) != 0; }

void freeze_op(std::string_view op, uint64_t id, const std::vector<uint64_t>& alloc_ids,
               const std::vector<uint64_t>& pending, const std::vector<uint64_t>& chunks, std::vector<int>& fds) {
  if (op == PHOS_OP_SNAPSHOT) op_snapshot(id, alloc_ids, fds);
  else if (op == PHOS_OP_FREEZE) op_freeze(id, alloc_ids, fds);
  else if (op == PHOS_OP_THAW) op_thaw(id, alloc_ids, pending, fds);
  else if (op == PHOS_OP_GATE) op_gate(id, chunks);
  else if (op == PHOS_OP_ROLLBACK) op_rollback(id);
  for (int fd : fds) close(fd);  // imports hold their own references
  fds.clear();
}

}  // namespace phos::hijack
