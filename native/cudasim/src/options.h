// cudasim options: one table of PHOS_SIM_* / PHOS_LOG environment variables, read once on first use.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace phos::cudasim {

struct Options {
  size_t mem_bytes;        // PHOS_SIM_MEM: device memory size, bytes (suffix K/M/G accepted); default 8 GiB
  uintptr_t va_base;       // PHOS_SIM_VA_BASE: base of the device VA region; default 0x7e0000000000
  std::string kernels;     // PHOS_SIM_KERNELS: colon list of plugin .so files or directories
  int gpus;                // PHOS_SIM_GPUS: number of simulated GPUs (1..16), each PHOS_SIM_MEM
  int log_level;           // PHOS_LOG: error=0 warn=1 info=2 debug=3; default warn
  std::string ctl_dir;     // PHOS_SIM_CTL_DIR: where checkpoint replies are written; default /dev/shm
  size_t context_state;    // PHOS_SIM_CONTEXT_STATE: the driver's own device state a checkpoint copies; default 8 MiB
};

const Options &options();

}  // namespace phos::cudasim
