// Process-level init: options and logging once (constructor, or the first hook that runs before it),
// and the cuInit wrapper, which is the "first driver call" where the agent link starts.
#pragma once
#include <cuda.h>

namespace phos::hijack {

/// Reads options and starts logging; idempotent, allocation-free, safe before main.
void runtime_init();

/// cuInit: forward, then (on success) start the agent link.
CUresult driver_init(unsigned int flags);

}  // namespace phos::hijack
