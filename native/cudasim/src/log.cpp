// cudasim logging sink (see log.h). Formatting happens on the stack; one write(2) per line so lines
// from worker threads do not interleave.
#include "log.h"

#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string>

#include "options.h"

namespace phos::cudasim::log {
namespace {

thread_local bool t_in_log = false;  // a log call that logs (allocation hooks, ...) must not re-enter

const char *level_name(Level l) {
  switch (l) {
    case Level::error: return "error: ";
    case Level::warn: return "warning: ";
    case Level::info: return "";
    case Level::debug: return "debug: ";
  }
  return "";
}

}  // namespace

bool enabled(Level level) { return static_cast<int>(level) <= options().log_level; }

void write(Level level, const char *file, int line, const char *fmt, ...) {
  if (t_in_log) return;
  t_in_log = true;
  char buf[1024];
  int n = snprintf(buf, sizeof buf, "cudasim[%d]: %s", static_cast<int>(getpid()), level_name(level));
  va_list ap;
  va_start(ap, fmt);
  n += vsnprintf(buf + n, sizeof buf - n, fmt, ap);
  va_end(ap);
  if (n > static_cast<int>(sizeof buf) - 64) n = sizeof buf - 64;
  if (level == Level::error) {
    const char *base = strrchr(file, '/');
    n += snprintf(buf + n, sizeof buf - n, " (%s:%d)", base ? base + 1 : file, line);
  }
  buf[n++] = '\n';
  ssize_t ignored = ::write(2, buf, n);
  (void)ignored;
  t_in_log = false;
}

bool first_time(std::string_view key) {
  static std::mutex *m = new std::mutex;  // leaked: log may be called during exit
  static auto *seen = new std::set<std::string, std::less<>>;
  std::lock_guard lk(*m);
  return seen->emplace(key).second;
}

}  // namespace phos::cudasim::log
