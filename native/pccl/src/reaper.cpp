// See reaper.h. waitpid() is only ever called for one named pid: libuv reaps the children Node spawned
// itself by pid, and a wait on -1 here would steal their exit from it.
#include "reaper.h"

#include <sys/prctl.h>
#include <sys/wait.h>

#include <cerrno>

#include "js.h"

namespace phos::pccl {

Napi::Value becomeSubreaper(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
      throw errno_failure(PHOS_ERR_INTERNAL, errno, "prctl(PR_SET_CHILD_SUBREAPER)");
    return info.Env().Undefined();
  });
}

Napi::Value reap(const Napi::CallbackInfo& info) {
  return guard(info, [&]() -> Napi::Value {
    const uint32_t pid = arg_u32(info[0], "pid");
    if (pid == 0) throw Failure(PHOS_ERR_BAD_ARGS, "reap: pid must be > 0");
    int status = 0;
    const pid_t r = waitpid(static_cast<pid_t>(pid), &status, WNOHANG);
    if (r <= 0) return info.Env().Null();  // running (0) or not our child (ECHILD)
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("code", WIFEXITED(status) ? Napi::Value(Napi::Number::New(info.Env(), WEXITSTATUS(status))) : info.Env().Null());
    o.Set("signal", WIFSIGNALED(status) ? Napi::Value(Napi::Number::New(info.Env(), WTERMSIG(status))) : info.Env().Null());
    return o;
  });
}

}  // namespace phos::pccl
