// Host mappings of shared memory fds (libphos's staging memfd) as regions chunk-io can address.
#pragma once

#include <napi.h>

namespace phos::pccl {

// mapFd(fd, size, writable) -> id. The fd stays the caller's; the mapping outlives its close.
Napi::Value mapFd(const Napi::CallbackInfo& info);
// unmap(id) -> undefined; the mapping goes once no chunk job still uses it.
Napi::Value unmap(const Napi::CallbackInfo& info);
// mapRead(id, offset, length) -> Buffer (a copy; for control data and tests, not bulk bytes).
Napi::Value mapRead(const Napi::CallbackInfo& info);
// mapWrite(id, offset, bytes) -> undefined (a copy; for control data and tests, not bulk bytes).
Napi::Value mapWrite(const Napi::CallbackInfo& info);

}  // namespace phos::pccl
