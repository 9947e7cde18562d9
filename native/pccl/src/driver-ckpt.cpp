// cuCheckpointProcess{Lock,Checkpoint,Restore,Unlock,GetState,GetRestoreThreadId} on another process.
// Each call blocks for as long as the driver needs (seconds for a process holding GPU memory), so each
// runs on the libuv pool. Ordering and rollback of the steps belong to the agent (TS).
#include "driver-ckpt.h"

#include <cstring>

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

Timed run_op(const std::string& op, int pid, uint32_t timeout_ms) {
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
    return run_async<Timed>(
        info.Env(), "pccl.driverCheckpoint", [op, pid, timeout] { return run_op(op, pid, timeout); },
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

}  // namespace phos::pccl
