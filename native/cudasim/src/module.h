// Module, function, library and kernel handles (module.cpp) as launch.cpp needs them.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "internal.h"
#include "kernels.h"
#include "ptx-parse.h"

struct CUfunc_st {
  phos::cudasim::Magic magic = phos::cudasim::Magic::function;
  CUmod_st *module = nullptr;
  phos::cudasim::ptx::Entry entry;
  std::vector<uint32_t> offsets, sizes;  // the entry's parameter layout, as cudasim_launch wants it
  std::atomic<cudasim_block_fn> fn{nullptr};
  uint32_t plugin_shared = 0;            // static shared bytes the plugin declared
  int max_dynamic_shared = 48 * 1024;
};

struct CUkern_st {
  phos::cudasim::Magic magic = phos::cudasim::Magic::kernel;
  CUlib_st *library = nullptr;
  CUfunc_st *function = nullptr;
};

namespace phos::cudasim {

// Binds `f` to its CPU kernel if a plugin has registered it since the module was loaded.
bool bind_kernel(CUfunc_st *f);
// A launchable function from a handle that may be a CUkernel cast to CUfunction.
CUfunc_st *launchable(CUfunction f);

}  // namespace phos::cudasim
