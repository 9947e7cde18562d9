// The agent's unix SOCK_SEQPACKET server for libphos: one native thread polls the listener and every
// connection and hands each packet (bytes + SCM_RIGHTS fds) to JS. Frame decoding, peer checks and
// protocol logic are the agent's (TS); this file only moves packets and fds.
#pragma once

#include <napi.h>

namespace phos::pccl {

// agentListen(path, onEvent) -> undefined. Events: {type:'connect', conn, pid, uid, gid},
// {type:'packet', conn, bytes, fds}, {type:'closed', conn, closed: true, reason}. One server per process.
Napi::Value agentListen(const Napi::CallbackInfo& info);
// agentSend(conn, bytes, fds) -> undefined. The fds stay the caller's (the kernel sends copies).
Napi::Value agentSend(const Napi::CallbackInfo& info);
// agentClose(conn) -> undefined; its 'closed' event follows.
Napi::Value agentClose(const Napi::CallbackInfo& info);
// agentServerClose() -> undefined; stops the thread, closes every connection, removes the socket file.
Napi::Value agentServerClose(const Napi::CallbackInfo& info);
// closeFd(fd) -> undefined: for fds JS received and does not hand on.
Napi::Value closeFd(const Napi::CallbackInfo& info);

}  // namespace phos::pccl
