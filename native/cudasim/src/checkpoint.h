// Process checkpoint API (cuCheckpointProcess*): the controller side runs in whichever process
// calls it; the target side is a helper thread started at cuInit (see checkpoint.cpp).
#pragma once

namespace phos::cudasim::checkpoint {

// Starts the target-side helper ("CUDA restore thread"); once, at cuInit.
void start_helper();

}  // namespace phos::cudasim::checkpoint
