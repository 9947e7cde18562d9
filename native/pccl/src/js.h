// Glue between the components and Node-API: argument readers that refuse wrong types (TS validates
// first; these only keep a bad call from crashing the agent), Failure -> JS Error, and run_async(), which
// runs a job on the libuv pool and settles a Promise with its result or its Failure.
#pragma once

#include <napi.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "failure.h"

namespace phos::pccl {

Napi::Error to_js_error(Napi::Env env, const Failure& f);

// Each throws Failure(BAD_ARGS) naming the argument when the value has the wrong type or range.
uint32_t arg_u32(const Napi::Value& v, const char* name);
int32_t arg_fd(const Napi::Value& v, const char* name);
uint64_t arg_u64(const Napi::Value& v, const char* name);  // a safe integer, 0 <= v < 2^53
bool arg_bool(const Napi::Value& v, const char* name);
std::string arg_string(const Napi::Value& v, const char* name);
Napi::Object arg_object(const Napi::Value& v, const char* name);
Napi::Array arg_array(const Napi::Value& v, const char* name);
Napi::Function arg_function(const Napi::Value& v, const char* name);
Napi::Value field(const Napi::Object& o, const char* key);

// Runs body(); a Failure it throws becomes a thrown JS error (for synchronous functions).
Napi::Value guard(const Napi::CallbackInfo& info, const std::function<Napi::Value()>& body);

double ms_since(std::chrono::steady_clock::time_point t0);

// A job for the libuv thread pool: `work` runs off the JS thread and must not touch Napi values;
// `to_js` runs on the JS thread with work's result. Resolves/rejects the returned Promise.
template <class R>
class Job final : public Napi::AsyncWorker {
 public:
  using Work = std::function<R()>;
  using ToJs = std::function<Napi::Value(Napi::Env, R&)>;

  Job(Napi::Env env, const char* name, Work work, ToJs to_js)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        to_js_(std::move(to_js)) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      result_ = work_();
    } catch (const Failure& f) {
      failure_ = std::make_unique<Failure>(f);
    } catch (const std::exception& e) {
      failure_ = std::make_unique<Failure>(PHOS_ERR_INTERNAL, std::string("pccl: ") + e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (failure_) {
      deferred_.Reject(to_js_error(env, *failure_).Value());
      return;
    }
    try {
      deferred_.Resolve(to_js_(env, result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  ToJs to_js_;
  R result_{};
  std::unique_ptr<Failure> failure_;
};

// Queues a Job; argument reading happens before this call, on the JS thread.
template <class R>
Napi::Value run_async(Napi::Env env, const char* name, typename Job<R>::Work work, typename Job<R>::ToJs to_js) {
  auto* job = new Job<R>(env, name, std::move(work), std::move(to_js));
  Napi::Promise p = job->promise();
  job->Queue();  // node-addon-api deletes the job after OnOK
  return p;
}

}  // namespace phos::pccl
