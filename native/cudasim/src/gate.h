// The API gate: cuCheckpointProcessLock closes it so that new API calls block, and waits until the
// calls already inside have left. Stream workers never pass the gate.
#pragma once

#include <chrono>
#include <optional>

namespace phos::cudasim::gate {

using Deadline = std::optional<std::chrono::steady_clock::time_point>;

// Closes the gate and waits for in-flight API calls to leave. On timeout the gate is reopened and
// false is returned (the process stays RUNNING, as the real driver documents).
bool close(Deadline deadline);
void open();
bool is_closed();

}  // namespace phos::cudasim::gate
