// phos-hijack options: one table of PHOS_* environment variables, read once (options()).
#pragma once
#include <cstdint>

namespace phos::hijack {

struct Options {
  bool disabled;            ///< PHOS_DISABLE=1: every wrapper is a bare forward, no region, no agent. @default 0
  int log_level;            ///< PHOS_LOG: off|error|warn|info|debug|trace or 0-5. @default warn
  bool vmm;                 ///< PHOS_VMM=0 serves cuMemAlloc from the driver (no region). @default 1
  uint64_t va_base;         ///< PHOS_VA_BASE (hex): where the region must sit. @default 0x600000000000
  uint64_t va_size;         ///< PHOS_VA_SIZE (bytes, hex, or with K/M/G/T suffix). @default 64G
  uint64_t slab_bytes;      ///< PHOS_SLAB_MIB: physical slab size. @default 64 (MiB)
  uint64_t staging_bytes;   ///< PHOS_STAGING_MIB: staging memfd handed to the agent. @default 64 (MiB)
  bool force_fd;            ///< PHOS_FORCE_FD=0 leaves the app's cuMemCreate handle types alone. @default 1
  bool arm;                 ///< PHOS_ARM=1 arms launch tracking from the start (tests, benchmarks). @default 0
  char agent_sock[108];     ///< PHOS_AGENT_SOCK: agent's SOCK_SEQPACKET socket; empty = no agent. @default ""
  char job[128];            ///< PHOS_JOB: job name passed in hello. @default ""
};

/// The effective options; the first call reads the environment (safe before main, no allocation).
const Options& options();

/// Logs the effective values at info level (called once from init).
void options_log();

}  // namespace phos::hijack
