// The driver's process checkpoint calls (cuCheckpointProcess*) on another pid, each on a worker thread.
#pragma once

#include <napi.h>

namespace phos::pccl {

// driverCheckpoint(op: 'lock'|'checkpoint'|'restore'|'unlock', pid, timeoutMs) -> Promise<{ms}>
Napi::Value driverCheckpoint(const Napi::CallbackInfo& info);
// driverState(pid) -> Promise<{state, ms}>
Napi::Value driverState(const Napi::CallbackInfo& info);
// restoreThreadId(pid) -> Promise<{tid, ms}>
Napi::Value restoreThreadId(const Napi::CallbackInfo& info);

// driverCopyShed(pid, addr, timeoutMs) -> Promise<{ms, done, scannedBytes, droppedBytes}>: asks a frozen
// libphos, through its mailbox at addr, to drop the zero pages of the driver's checkpoint copy.
Napi::Value driverCopyShed(const Napi::CallbackInfo& info);

}  // namespace phos::pccl
