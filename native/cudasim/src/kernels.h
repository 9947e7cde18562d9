// CPU kernels: the registry that plugins fill through cudasim_host_api, plugin discovery, and the
// grid runner that executes a launch's blocks on the stream worker plus a small shared pool.
#pragma once

#include <string>

#include "phos/cudasim.h"

namespace phos::cudasim::kernels {

struct Impl {
  cudasim_block_fn fn = nullptr;
  uint32_t static_shared = 0;
};

// Loads every plugin named by PHOS_SIM_KERNELS, or every *.so in kernels/ beside libcuda.so.1.
void load_plugins();
bool lookup(const std::string &entry, Impl *out);
// Runs every block of `launch`; returns when all have finished. `shared_bytes` = static + dynamic.
void run_grid(const cudasim_launch &launch, cudasim_block_fn fn, uint32_t shared_bytes);

}  // namespace phos::cudasim::kernels
