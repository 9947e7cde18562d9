// phos-hijack logging sink. Formats into a stack buffer and writes with one write(2): no stdio, no
// allocation, so it is safe from inside hooks and early in the process life.
#include "log.h"

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <unistd.h>

namespace phos::hijack {

std::atomic<int> g_log_level{-1};

namespace {
thread_local bool t_in_log = false;
const char* const kNames[] = {"off", "error", "warn", "info", "debug", "trace"};
}  // namespace

void log_init(int level) { g_log_level.store(level, std::memory_order_relaxed); }

void log_write(Level l, const char* file, int line, const char* fmt, ...) {
  if (t_in_log) return;
  t_in_log = true;
  int saved_errno = errno;
  char buf[1024];
  int n = snprintf(buf, sizeof buf, "phos-hijack[%d]: %s: ", static_cast<int>(getpid()),
                   kNames[static_cast<int>(l)]);
  if (n < 0) n = 0;
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(buf + n, sizeof buf - static_cast<size_t>(n), fmt, ap);
  va_end(ap);
  size_t len = static_cast<size_t>(n) + (m > 0 ? static_cast<size_t>(m) : 0);
  if (len > sizeof buf - 64) len = sizeof buf - 64;
  if (l <= Level::warn) {
    const char* base = strrchr(file, '/');
    int k = snprintf(buf + len, sizeof buf - len, " (%s:%d)", base ? base + 1 : file, line);
    if (k > 0) len += static_cast<size_t>(k);
  }
  buf[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, buf, len);
  (void)w;
  errno = saved_errno;
  t_in_log = false;
}

}  // namespace phos::hijack
