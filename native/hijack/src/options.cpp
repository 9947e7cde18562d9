// The PHOS_* option table: parsed once from the environment into a static Options. Bad values are
// reported once (after logging is up) and replaced by the default.
#include "options.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "log.h"

namespace phos::hijack {
namespace {

Options g_opts;
std::atomic<int> g_state{0};  // 0 unread, 1 reading, 2 ready
const char* g_bad[8];         // names of variables with bad values, reported by options_log
int g_nbad = 0;

bool parse_u64(const char* s, uint64_t* out, bool allow_suffix) {
  if (!s || !*s) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno || end == s) return false;
  if (allow_suffix && *end) {
    int shift = 0;
    switch (*end) {
      case 'k': case 'K': shift = 10; break;
      case 'm': case 'M': shift = 20; break;
      case 'g': case 'G': shift = 30; break;
      case 't': case 'T': shift = 40; break;
      default: return false;
    }
    ++end;
    if (*end == 'i' || *end == 'B') ++end;
    if (*end == 'B') ++end;
    if (v > (~0ull >> shift)) return false;
    v <<= shift;
  }
  if (*end) return false;
  *out = v;
  return true;
}

void bad(const char* name) {
  if (g_nbad < 8) g_bad[g_nbad++] = name;
}

void read_u64(const char* name, uint64_t* field, uint64_t def, bool suffix, uint64_t mul = 1) {
  *field = def;
  const char* s = getenv(name);
  if (!s || !*s) return;
  uint64_t v;
  if (parse_u64(s, &v, suffix) && v != 0 && v <= (~0ull / mul)) *field = v * mul;
  else bad(name);
}

bool read_bool(const char* name, bool def) {
  const char* s = getenv(name);
  if (!s || !*s) return def;
  if (!strcmp(s, "1") || !strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")) return true;
  if (!strcmp(s, "0") || !strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")) return false;
  bad(name);
  return def;
}

void read_str(const char* name, char* field, size_t cap) {
  field[0] = 0;
  const char* s = getenv(name);
  if (!s) return;
  if (strlen(s) >= cap) { bad(name); return; }
  memcpy(field, s, strlen(s) + 1);
}

int parse_level(const char* s) {
  static const char* const names[] = {"off", "error", "warn", "info", "debug", "trace"};
  for (int i = 0; i < 6; ++i)
    if (!strcmp(s, names[i])) return i;
  if (s[0] >= '0' && s[0] <= '5' && !s[1]) return s[0] - '0';
  return -1;
}

void read_all() {
  Options& o = g_opts;
  o.disabled = read_bool("PHOS_DISABLE", false);
  o.log_level = static_cast<int>(Level::warn);
  if (const char* s = getenv("PHOS_LOG"); s && *s) {
    int l = parse_level(s);
    if (l >= 0) o.log_level = l; else bad("PHOS_LOG");
  }
  o.vmm = read_bool("PHOS_VMM", true);
  read_u64("PHOS_VA_BASE", &o.va_base, 0x600000000000ull, false);
  read_u64("PHOS_VA_SIZE", &o.va_size, 64ull << 30, true);
  read_u64("PHOS_SLAB_MIB", &o.slab_bytes, 64ull << 20, false, 1ull << 20);
  read_u64("PHOS_STAGING_MIB", &o.staging_bytes, 64ull << 20, false, 1ull << 20);
  constexpr uint64_t k2M = 2ull << 20;
  if (o.va_base % k2M) { bad("PHOS_VA_BASE"); o.va_base = 0x600000000000ull; }
  if (o.va_size % k2M || o.va_size < k2M) { bad("PHOS_VA_SIZE"); o.va_size = 64ull << 30; }
  o.force_fd = read_bool("PHOS_FORCE_FD", true);
  o.arm = read_bool("PHOS_ARM", false);
  read_str("PHOS_AGENT_SOCK", o.agent_sock, sizeof o.agent_sock);
  read_str("PHOS_JOB", o.job, sizeof o.job);
}

}  // namespace

const Options& options() {
  if (g_state.load(std::memory_order_acquire) == 2) return g_opts;
  int expected = 0;
  if (g_state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    read_all();
    g_state.store(2, std::memory_order_release);
  } else {
    while (g_state.load(std::memory_order_acquire) != 2) {
    }
  }
  return g_opts;
}

void options_log() {
  const Options& o = options();
  for (int i = 0; i < g_nbad; ++i)
    PHOS_LOG(warn, "option %s has a bad value (%s); using the default", g_bad[i], getenv(g_bad[i]));
  PHOS_LOG(info,
           "options: disabled=%d vmm=%d va_base=0x%llx va_size=0x%llx slab_bytes=%llu staging_bytes=%llu "
           "force_fd=%d arm=%d agent_sock='%s' job='%s' log=%d",
           o.disabled, o.vmm, (unsigned long long)o.va_base, (unsigned long long)o.va_size,
           (unsigned long long)o.slab_bytes, (unsigned long long)o.staging_bytes, o.force_fd, o.arm,
           o.agent_sock, o.job, o.log_level);
}

}  // namespace phos::hijack
