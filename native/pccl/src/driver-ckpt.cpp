// cuCheckpointProcess{Lock,Checkpoint,Restore,Unlock,GetState,GetRestoreThreadId} on another process.
// Each call blocks for as long as the driver needs (seconds for a process holding GPU memory), so each
// runs on the libuv pool. Ordering and rollback of the steps belong to the agent (TS).
#include "driver-ckpt.h"

#include <sys/uio.h>
#include <time.h>

#include <cctype>
#include <cstring>
#include <string>
#include <vector>

#include "driver.h"
#include "js.h"

namespace phos::pccl {

namespace {

struct Timed {
  double ms = 0;
  int64_t value = 0;
};

std::string pid_ctx(int pid) { return " for pid " + std::to_string(pid); }

// Fails with the pid attached, so the agent can name the process without re-parsing the message.
void check_pid(CUresult r, const char* call, int pid) {
  try {
    cu_check(r, call, pid_ctx(pid));
  } catch (Failure& f) {
    f.with("pid", pid);
    throw;
  }
}

template <class F>
F need(F fn, const char* name) {
  if (!fn)
    throw Failure(PHOS_ERR_DRIVER_FAILED, std::string(driver().path) + " lacks " + name +
                                              "; process checkpoint needs CUDA driver >= 570")
        .with("cudaError", "CUDA_ERROR_NOT_SUPPORTED");
  return fn;
}

// "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (prefix and dashes optional) -> 16 bytes.
CUuuid parse_uuid(const std::string& text) {
  std::string hex;
  size_t from = text.rfind("GPU-", 0) == 0 ? 4 : 0;
  for (size_t i = from; i < text.size(); i++) {
    char c = text[i];
    if (c == '-') continue;
    if (!isxdigit(static_cast<unsigned char>(c))) hex.clear(), i = text.size();
    else hex += c;
  }
  if (hex.size() != 32) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: '" + text + "' is not a GPU UUID");
  CUuuid u;
  for (int i = 0; i < 16; i++) u.bytes[i] = static_cast<char>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  return u;
}

using Pairs = std::vector<CUcheckpointGpuPair>;

// [[oldUuid, newUuid], ...] (restore only); absent or empty = the GPUs it was checkpointed on.
Pairs arg_pairs(const Napi::CallbackInfo& info, size_t i) {
  Pairs out;
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return out;
  if (!info[i].IsArray()) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: gpuPairs must be an array of [old, new] UUIDs");
  auto a = info[i].As<Napi::Array>();
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value v = a.Get(k);
    if (!v.IsArray() || v.As<Napi::Array>().Length() != 2)
      throw Failure(PHOS_ERR_BAD_ARGS, "pccl: gpuPairs[" + std::to_string(k) + "] must be [old, new]");
    auto p = v.As<Napi::Array>();
    CUcheckpointGpuPair pair;
    std::memset(&pair, 0, sizeof pair);
    pair.oldUuid = parse_uuid(arg_string(p.Get(0u), "gpuPairs old"));
    pair.newUuid = parse_uuid(arg_string(p.Get(1u), "gpuPairs new"));
    out.push_back(pair);
  }
  return out;
}

Timed run_op(const std::string& op, int pid, uint32_t timeout_ms, Pairs pairs) {
  const Driver& d = driver();
  auto t0 = std::chrono::steady_clock::now();
  if (op == "lock") {
    CUcheckpointLockArgs a;
    std::memset(&a, 0, sizeof a);  // reserved fields must be zero
    a.timeoutMs = timeout_ms;
    check_pid(need(d.cuCheckpointProcessLock, "cuCheckpointProcessLock")(pid, &a), "cuCheckpointProcessLock", pid);
  } else if (op == "checkpoint") {
    CUcheckpointCheckpointArgs a;
    std::memset(&a, 0, sizeof a);
    check_pid(need(d.cuCheckpointProcessCheckpoint, "cuCheckpointProcessCheckpoint")(pid, &a),
              "cuCheckpointProcessCheckpoint", pid);
  } else if (op == "restore") {
    CUcheckpointRestoreArgs a;
    std::memset(&a, 0, sizeof a);  // no gpuPairs: restore onto the devices it was checkpointed on
    if (!pairs.empty()) {  // onto other GPUs: every GPU the process sees must be named (driver 580)
      a.gpuPairs = pairs.data();
      a.gpuPairsCount = static_cast<unsigned>(pairs.size());
    }
    check_pid(need(d.cuCheckpointProcessRestore, "cuCheckpointProcessRestore")(pid, &a), "cuCheckpointProcessRestore",
              pid);
  } else if (op == "unlock") {
    CUcheckpointUnlockArgs a;
    std::memset(&a, 0, sizeof a);
    check_pid(need(d.cuCheckpointProcessUnlock, "cuCheckpointProcessUnlock")(pid, &a), "cuCheckpointProcessUnlock",
              pid);
  } else {
    throw Failure(PHOS_ERR_BAD_ARGS, "pccl: unknown driver checkpoint op '" + op + "'");
  }
  return Timed{ms_since(t0), 0};
}

const char* state_name(int64_t s) {
  switch (s) {
    case CU_PROCESS_STATE_RUNNING: return "running";
    case CU_PROCESS_STATE_LOCKED: return "locked";
    case CU_PROCESS_STATE_CHECKPOINTED: return "checkpointed";
    case CU_PROCESS_STATE_FAILED: return "failed";
    case 4: return "checkpointing";  // newer bindings; not in CUDA 13.0's cuda.h
    case 5: return "restoring";
    default: return "unknown";
  }
}

int arg_pid(const Napi::Value& v) {
  uint32_t pid = arg_u32(v, "pid");
  if (pid == 0 || pid > INT32_MAX) throw Failure(PHOS_ERR_BAD_ARGS, "pccl: pid must be a positive process id");
  return static_cast<int>(pid);
}

}  // namespace

Napi::Value driverCheckpoint(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    std::string op = arg_string(info[0], "op");
    int pid = arg_pid(info[1]);
    uint32_t timeout = arg_u32(info[2], "timeoutMs");
    Pairs pairs = arg_pairs(info, 3);
    if (!pairs.empty() && op != "restore") throw Failure(PHOS_ERR_BAD_ARGS, "pccl: gpuPairs apply to restore only");
    return run_async<Timed>(
        info.Env(), "pccl.driverCheckpoint", [op, pid, timeout, pairs] { return run_op(op, pid, timeout, pairs); },
        [](Napi::Env env, Timed& t) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("ms", t.ms);
          return o;
        });
  });
}

Napi::Value driverState(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    int pid = arg_pid(info[0]);
    return run_async<Timed>(
        info.Env(), "pccl.driverState",
        [pid] {
          const Driver& d = driver();
          auto t0 = std::chrono::steady_clock::now();
          CUprocessState s = CU_PROCESS_STATE_RUNNING;
          check_pid(need(d.cuCheckpointProcessGetState, "cuCheckpointProcessGetState")(pid, &s),
                    "cuCheckpointProcessGetState", pid);
          return Timed{ms_since(t0), static_cast<int64_t>(s)};
        },
        [](Napi::Env env, Timed& t) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("state", state_name(t.value));
          o.Set("ms", t.ms);
          return o;
        });
  });
}

Napi::Value restoreThreadId(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    int pid = arg_pid(info[0]);
    return run_async<Timed>(
        info.Env(), "pccl.restoreThreadId",
        [pid] {
          const Driver& d = driver();
          auto t0 = std::chrono::steady_clock::now();
          int tid = 0;
          check_pid(need(d.cuCheckpointProcessGetRestoreThreadId, "cuCheckpointProcessGetRestoreThreadId")(pid, &tid),
                    "cuCheckpointProcessGetRestoreThreadId", pid);
          return Timed{ms_since(t0), tid};
        },
        [](Napi::Env env, Timed& t) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("tid", static_cast<double>(t.value));
          o.Set("ms", t.ms);
          return o;
        });
  });
}

namespace {

struct Shed {
  double ms;
  bool done;
  uint64_t scanned, dropped;
};

bool mem_rw(int pid, uint64_t addr, void* buf, size_t n, bool write) {
  iovec local{buf, n}, remote{reinterpret_cast<void*>(addr), n};
  ssize_t r = write ? process_vm_writev(pid, &local, 1, &remote, 1, 0) : process_vm_readv(pid, &local, 1, &remote, 1, 0);
  return r == static_cast<ssize_t>(n);
}

// libphos's shed mailbox (native/hijack/src/driver-copy.cpp): four u64 — request, done, bytes scanned,
// bytes dropped. Writes request 1, then polls `done` every 100 us until it says 1 or the time is up.
Shed shed_driver_copy(int pid, uint64_t addr, uint32_t timeout_ms) {
  auto t0 = std::chrono::steady_clock::now();
  uint64_t one = 1;
  if (!mem_rw(pid, addr, &one, sizeof one, true))
    throw Failure(PHOS_ERR_NOT_FOUND, "pccl: cannot write the shed mailbox of pid " + std::to_string(pid) + ": " + strerror(errno));
  uint64_t box[4] = {};
  for (;;) {
    if (!mem_rw(pid, addr, box, sizeof box, false))
      throw Failure(PHOS_ERR_NOT_FOUND, "pccl: cannot read the shed mailbox of pid " + std::to_string(pid) + ": " + strerror(errno));
    double ms = ms_since(t0);
    if (box[1] == 1) return Shed{ms, true, box[2], box[3]};
    if (ms >= timeout_ms) return Shed{ms, false, 0, 0};
    timespec ts{0, 100 * 1000};
    nanosleep(&ts, nullptr);
  }
}

}  // namespace

Napi::Value driverCopyShed(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    int pid = arg_pid(info[0]);
    double a = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
    if (!(a > 0) || a >= 9007199254740992.0 || a != static_cast<double>(static_cast<uint64_t>(a)))
      throw Failure(PHOS_ERR_BAD_ARGS, "pccl: addr must be a positive integer address");
    auto addr = static_cast<uint64_t>(a);
    uint32_t timeout = arg_u32(info[2], "timeoutMs");
    return run_async<Shed>(
        info.Env(), "pccl.driverCopyShed", [pid, addr, timeout] { return shed_driver_copy(pid, addr, timeout); },
        [](Napi::Env env, Shed& s) -> Napi::Value {
          Napi::Object o = Napi::Object::New(env);
          o.Set("ms", s.ms);
          o.Set("done", s.done);
          o.Set("scannedBytes", static_cast<double>(s.scanned));
          o.Set("droppedBytes", static_cast<double>(s.dropped));
          return o;
        });
  });
}

}  // namespace phos::pccl
