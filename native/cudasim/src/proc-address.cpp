// cuGetProcAddress (4-argument, CUDA 11.3 ABI) and cuGetProcAddress_v2 (5-argument, 12.0 ABI):
// newest ABI at or before the requested version; flags 2 prefer the per-thread-stream variant;
// unknown names succeed with NULL and SYMBOL_NOT_FOUND; versions above the driver's are invalid.
#include <cstring>

#include "internal.h"
#include "proc-table.h"

namespace phos::cudasim {
namespace {

constexpr int kDriverVersion = 13000;

CUresult lookup(const char *symbol, void **pfn, int version, cuuint64_t flags,
                CUdriverProcAddressQueryResult *status) {
  if (!symbol || !pfn) return CUDA_ERROR_INVALID_VALUE;
  if (version > kDriverVersion) return CUDA_ERROR_INVALID_VALUE;
  bool per_thread = flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
  size_t n;
  const ProcRow *rows = proc_rows(&n);
  const ProcRow *legacy = nullptr, *pt = nullptr;
  bool known = false;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(rows[i].base, symbol) != 0) continue;
    known = true;
    if (rows[i].version > version) continue;
    (rows[i].per_thread ? pt : legacy) = &rows[i];  // rows ascend by version: keep the newest
  }
  const ProcRow *pick = per_thread && pt ? pt : legacy;
  *pfn = pick ? pick->fn : nullptr;
  if (status) {
    *status = pick ? CU_GET_PROC_ADDRESS_SUCCESS
              : known ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
                      : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
  }
  return CUDA_SUCCESS;
}

}  // namespace
}  // namespace phos::cudasim

CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
                             CUdriverProcAddressQueryResult *symbolStatus) {
  return phos::cudasim::lookup(symbol, pfn, cudaVersion, flags, symbolStatus);
}

CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags) {
  return phos::cudasim::lookup(symbol, pfn, cudaVersion, flags, nullptr);
}

// Private driver tables (cudart internals, profiler hooks) are not simulated.
CUresult cuGetExportTable(const void **ppExportTable, const CUuuid *) {
  if (ppExportTable) *ppExportTable = nullptr;
  return CUDA_ERROR_NOT_SUPPORTED;
}
