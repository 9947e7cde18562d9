// Process checkpoint API (cuCheckpointProcess*). The controller side runs in whichever process calls
// it; the target side is the helper ("CUDA restore") thread every cudasim process starts at cuInit.
//
// Channel (nothing stays open, so CRIU can dump the target at any point):
//  1. the controller finds the target's helper thread by its name (/proc/PID/task/*/comm ==
//     "cudasim-ctl"; that tid is also what cuCheckpointProcessGetRestoreThreadId returns);
//  2. it queues a real-time signal at that thread (rt_tgsigqueueinfo) carrying the command, a nonce
//     and the lock timeout in si_value; the helper waits for it in sigwaitinfo (EINTR after a CRIU
//     restore just loops);
//  3. the helper does the work and writes "result state" to <ctl_dir>/cudasim-ctl.<nonce> (write to a
//     temporary name, then rename); the controller polls /proc/PID/root/<ctl_dir>/... (so a target in
//     another mount namespace works), reads it and unlinks it.
#pragma once

namespace phos::cudasim::checkpoint {

// Starts the helper thread; once, at cuInit.
void start_helper();

}  // namespace phos::cudasim::checkpoint
