// Freeze, thaw, snapshot, rollback and the gate op (the agent's `req` frames; contract in
// proto/src/frames.ts). Runs on the agent-link thread; app threads only ever wait at the gates.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

namespace phos::hijack {

/// Serves one of snapshot|freeze|thaw|gate|rollback. Takes ownership of `fds` (closes every one it does
/// not keep; the vector is left empty).
void freeze_op(std::string_view op, uint64_t id, const std::vector<uint64_t>& alloc_ids,
               const std::vector<uint64_t>& pending, const std::vector<uint64_t>& chunks, std::vector<int>& fds);

/// True from a successful freeze until the thaw that brings every allocation back.
bool freeze_frozen();
/// Frozen, or chunks still pending: the link thread must reconnect if the socket goes away.
bool freeze_needs_agent();

}  // namespace phos::hijack
