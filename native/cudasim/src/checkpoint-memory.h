// What Checkpoint and Restore do to device memory in the target process (checkpoint-memory.cpp).
#pragma once

#include "internal.h"

namespace phos::cudasim::checkpoint {

// Copies every physical allocation into private anonymous memory, replaces every device mapping by
// a PROT_NONE placeholder and closes every memfd: afterwards the process holds device contents as
// ordinary host memory, like the real driver after cuCheckpointProcessCheckpoint.
CUresult save_device_memory();
// Creates fresh memfds from the saved copies and maps them back at the same addresses with the same
// access. Shared identity with other processes (exported/imported fds) is not preserved.
CUresult restore_device_memory();

}  // namespace phos::cudasim::checkpoint
