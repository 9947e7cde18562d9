// Reads the PHOS_SIM_* variables once. Bad values are warned about and replaced by the default.
#include "options.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <strings.h>
#include <unistd.h>

namespace phos::cudasim {
namespace {

constexpr size_t kDefaultMem = size_t{8} << 30;
constexpr uintptr_t kDefaultVaBase = 0x7e0000000000ull;

void warn_bad(const char *name, const char *value) {
  fprintf(stderr, "cudasim[%d]: warning: ignoring %s=%s (bad value; using the default)\n",
          static_cast<int>(getpid()), name, value);
}

size_t parse_size(const char *name, size_t dflt) {
  const char *v = getenv(name);
  if (!v || !*v) return dflt;
  char *end = nullptr;
  unsigned long long n = strtoull(v, &end, 0);
  switch (*end) {
    case 'k': case 'K': n <<= 10; end++; break;
    case 'm': case 'M': n <<= 20; end++; break;
    case 'g': case 'G': n <<= 30; end++; break;
    case 't': case 'T': n <<= 40; end++; break;
    default: break;
  }
  if (*end == 'i' || *end == 'B') end++;
  if (*end == 'B') end++;
  if (*end || n == 0) {
    warn_bad(name, v);
    return dflt;
  }
  return n;
}

int parse_level(const char *v) {
  if (!v || !*v) return 1;
  if (!strcasecmp(v, "error")) return 0;
  if (!strcasecmp(v, "warn") || !strcasecmp(v, "warning")) return 1;
  if (!strcasecmp(v, "info")) return 2;
  if (!strcasecmp(v, "debug") || !strcasecmp(v, "trace")) return 3;
  warn_bad("PHOS_LOG", v);
  return 1;
}

Options load() {
  Options o;
  o.mem_bytes = parse_size("PHOS_SIM_MEM", kDefaultMem);
  o.va_base = parse_size("PHOS_SIM_VA_BASE", kDefaultVaBase);
  const char *k = getenv("PHOS_SIM_KERNELS");
  o.kernels = k ? k : "";
  o.gpus = static_cast<int>(parse_size("PHOS_SIM_GPUS", 1));
  if (o.gpus < 1 || o.gpus > 16) {
    warn_bad("PHOS_SIM_GPUS", getenv("PHOS_SIM_GPUS"));
    o.gpus = 1;
  }
  o.log_level = parse_level(getenv("PHOS_LOG"));
  const char *d = getenv("PHOS_SIM_CTL_DIR");
  o.ctl_dir = d && *d ? d : "/dev/shm";
  o.context_state = parse_size("PHOS_SIM_CONTEXT_STATE", size_t{8} << 20);
  if (o.log_level >= 2) {
    fprintf(stderr,
            "cudasim[%d]: options PHOS_SIM_MEM=%zu PHOS_SIM_VA_BASE=0x%lx PHOS_SIM_KERNELS=%s "
            "PHOS_SIM_GPUS=%d PHOS_SIM_CTL_DIR=%s\n",
            static_cast<int>(getpid()), o.mem_bytes, static_cast<unsigned long>(o.va_base),
            o.kernels.c_str(), o.gpus, o.ctl_dir.c_str());
  }
  return o;
}

}  // namespace

const Options &options() {
  static const Options *o = new Options(load());  // leaked on purpose: used during exit
  return *o;
}

}  // namespace phos::cudasim
