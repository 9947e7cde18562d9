// The link to the node agent: one SOCK_SEQPACKET connection at PHOS_AGENT_SOCK carrying msgpack frames
// (and fds via SCM_RIGHTS). No socket configured or reachable: libphos runs as if there were no agent.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <cuda.h>

namespace phos::hijack {

/// Connects once, lazily (first driver call; never from dlsym): hello + staging memfd, then replays the
/// slabs that already exist, then starts the receiver thread. Idempotent and cheap after the first call.
void agent_start();

/// True while the link is up.
bool agent_connected();

/// A physical slab (or an app VMM handle) appeared: export its POSIX fd and send `alloc` (keeper).
/// `va` is 0 for an app handle that is not mapped by libphos; `dev` the device ordinal of the memory.
/// Called under the VMM lock.
void agent_alloc_added(uint64_t id, uint64_t va, uint64_t size, CUmemGenericAllocationHandle h, const char* kind, int dev);
/// It was released: send `free`. Called under the VMM lock.
void agent_alloc_removed(uint64_t id);

/// "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" per device ordinal, asked now (hello, thaw): after a restore
/// onto other GPUs an ordinal names another GPU. Empty before cuInit or when the driver cannot say.
std::vector<std::string> agent_gpu_uuids();

/// Sends event {kind, chunks} (best effort; nothing when the link is down). Any thread.
void agent_send_event(const char* kind, const std::vector<uint32_t>& chunks);

namespace msgpack { class Writer; }
/// Sends one prepared frame (optionally with one fd, which stays the caller's). False when the link is down.
bool agent_send(const msgpack::Writer& w, int fd);
/// Replies ok: false to req `id`.
void agent_rep_error(uint64_t id, const char* code, const std::string& message);
/// After a freeze reply: closes the socket; the link thread then reconnects every few ms (bounded
/// backoff) and says hello {resume: true}. Called on the link thread.
void agent_close_for_freeze();

}  // namespace phos::hijack
