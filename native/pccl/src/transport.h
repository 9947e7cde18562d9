// The agent-to-agent data plane: N parallel TCP streams of one session, chunks sent straight from a
// mapping (or through the keeper's pinned staging), each under a fixed header carrying libphos's chunk
// hash, verified on arrival and written into the destination the receiver registered for its alloc id.
// Scheduling (what to send, when, to whom) is the node agent's; this file only moves and checks bytes.
#pragma once

#include <napi.h>

namespace phos::pccl {

// transportListen({host, port, streams, timeoutMs}, onEvent) -> {id, port}. Binds at once (port 0:
// an ephemeral port), then accepts the streams of one session, each on its own thread. Events:
// stream, chunk, corrupt, progress, stream-closed, error, end (see pccl.ts for their fields).
Napi::Value transportListen(const Napi::CallbackInfo& info);
// transportRegisterDest(receiver, alloc, {dst, offset}) -> undefined. Chunks of `alloc` land at
// dst region offset + chunkOffset. Re-registering an alloc replaces its destination.
Napi::Value transportRegisterDest(const Napi::CallbackInfo& info);
// transportReceiverClose(receiver) -> undefined. Ends every connection and joins the threads. Idempotent.
Napi::Value transportReceiverClose(const Napi::CallbackInfo& info);
// transportConnect({host, port, streams, bandwidthBytesPerSec|null, timeoutMs, reconnects, fault|null},
// onEvent) -> Promise<{id, session}> once every stream has completed its handshake.
Napi::Value transportConnect(const Napi::CallbackInfo& info);
// transportSend(sender, [{src, offset, length, alloc, chunkOffset}]) -> Promise<{bytes, ms, hashes,
// perStream}>, settled once the receiver acknowledged every chunk (or with the first failure).
Napi::Value transportSend(const Napi::CallbackInfo& info);
// transportSetBandwidth(sender, bytesPerSec|null) -> undefined; takes effect on the next piece sent.
Napi::Value transportSetBandwidth(const Napi::CallbackInfo& info);
// transportClose(sender) -> Promise<{bytes, chunks, ms, perStream}>: end-of-session marker on every
// live stream, wait for the receiver's acknowledgement, join the threads. Pending sends are CANCELLED.
Napi::Value transportClose(const Napi::CallbackInfo& info);

}  // namespace phos::pccl
