// The agent as the reaper of the processes CRIU restores for it: CRIU's restored tree is re-parented
// to the nearest child subreaper when criu exits, so the agent learns their exit status and no zombie
// keeps a pid on machines whose init does not reap (containers without one).
#pragma once

#include <napi.h>

namespace phos::pccl {

// becomeSubreaper() -> undefined (throws on failure)
Napi::Value becomeSubreaper(const Napi::CallbackInfo& info);
// reap(pid) -> null while pid runs (or is not our child), else {code, signal}; never blocks
Napi::Value reap(const Napi::CallbackInfo& info);

}  // namespace phos::pccl
