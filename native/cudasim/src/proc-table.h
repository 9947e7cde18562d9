// The cuGetProcAddress table (generated rows in proc-table.inc, built in unsupported.cpp).
#pragma once

#include <cstddef>

namespace phos::cudasim {

struct ProcRow {
  const char *base;  // name as the runtime asks for it ("cuMemAlloc")
  int version;       // CUDA version that introduced this ABI (1000*major + 10*minor)
  void *fn;          // the exported symbol implementing it (an unsupported stub if not simulated)
  int per_thread;    // 1 for the _ptsz/_ptds variant
};

// Rows sorted by base name, then version.
const ProcRow *proc_rows(size_t *count);

}  // namespace phos::cudasim
