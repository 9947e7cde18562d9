// Every entry point cuda.h declares gets an exported weak stub here that logs its name once and
// returns CUDA_ERROR_NOT_SUPPORTED; the API-family files override the ones cudasim implements with
// strong definitions. The same names feed the cuGetProcAddress table, so a look-up returns the
// implementation when there is one and the stub otherwise. This file must not include cuda.h: the
// stubs are declared without their real prototypes (an extra-argument call is harmless on x86-64).
#include <string>

#include "log.h"
#include "proc-table.h"

namespace phos::cudasim {
namespace {

int unsupported_call(const char *name) {
  if (log::first_time(std::string("unsupported:") + name))
    CUSIM_WARN("%s is not simulated; returning CUDA_ERROR_NOT_SUPPORTED", name);
  return 801;  // CUDA_ERROR_NOT_SUPPORTED
}

}  // namespace
}  // namespace phos::cudasim

#define X(name)                                                                         \
  extern "C" int name();                                                                \
  extern "C" __attribute__((weak, visibility("default"))) int name() {                  \
    return phos::cudasim::unsupported_call(#name);                                      \
  }
#include "driver-names.inc"
#undef X

namespace phos::cudasim {
namespace {

#define P(base, version, symbol, per_thread) {#base, version, reinterpret_cast<void *>(&symbol), per_thread},
const ProcRow kRows[] = {
#include "proc-table.inc"
};
#undef P

}  // namespace

const ProcRow *proc_rows(size_t *count) {
  *count = sizeof kRows / sizeof kRows[0];
  return kRows;
}

}  // namespace phos::cudasim
