// cuGetErrorName / cuGetErrorString from the generated CUresult table.
#include "internal.h"

namespace {

struct ErrorRow {
  CUresult code;
  const char *name;
  const char *text;
};

#define X(name, text) {name, #name, text},
constexpr ErrorRow kErrors[] = {
#include "error-table.inc"
};
#undef X

const ErrorRow *find(CUresult e) {
  for (const ErrorRow &r : kErrors)
    if (r.code == e) return &r;
  return nullptr;
}

}  // namespace

CUresult cuGetErrorName(CUresult error, const char **pStr) {
  if (!pStr) return CUDA_ERROR_INVALID_VALUE;
  const ErrorRow *r = find(error);
  *pStr = r ? r->name : nullptr;
  return r ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult cuGetErrorString(CUresult error, const char **pStr) {
  if (!pStr) return CUDA_ERROR_INVALID_VALUE;
  const ErrorRow *r = find(error);
  *pStr = r ? r->text : nullptr;
  return r ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
