// phos-hijack logging: one sink (stderr via write(2)), level from PHOS_LOG, prefix `phos-hijack[pid]: `.
// Nothing is printed before log_init() (called from init once options are read); a thread-local guard
// drops messages logged from inside the logger itself. Errors and warnings carry file:line.
#pragma once
#include <time.h>

#include <atomic>

namespace phos::hijack {

/// Log levels, lowest is most severe. PHOS_LOG takes the name or the number.
enum class Level : int {
  off = 0,    ///< nothing at all
  error = 1,  ///< libphos degraded to pass-through or refused something; one line per cause
  warn = 2,   ///< something unexpected that libphos worked around
  info = 3,   ///< lifecycle: region reserved, agent connected, ops served
  debug = 4,  ///< per-allocation and per-op detail
  trace = 5,  ///< per-call detail (proc-address queries, launches); slow
};

extern std::atomic<int> g_log_level;  // -1 until log_init: nothing printed before init

inline bool log_enabled(Level l) { return static_cast<int>(l) <= g_log_level.load(std::memory_order_relaxed); }
void log_init(int level);
void log_write(Level l, const char* file, int line, const char* fmt, ...) __attribute__((format(printf, 4, 5)));

/// Monotonic milliseconds, for the durations the log lines and replies report.
inline double now_ms() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

}  // namespace phos::hijack

#define PHOS_LOG(lvl, ...)                                                                          \
  do {                                                                                              \
    if (::phos::hijack::log_enabled(::phos::hijack::Level::lvl))                                    \
      ::phos::hijack::log_write(::phos::hijack::Level::lvl, __FILE__, __LINE__, __VA_ARGS__);       \
  } while (0)

// Same, but at most `cap` lines from this call site for the life of the process (repeats capped).
#define PHOS_LOG_CAPPED(cap, lvl, ...)                                                              \
  do {                                                                                              \
    static std::atomic<int> phos_log_site_count_{0};                                                \
    if (::phos::hijack::log_enabled(::phos::hijack::Level::lvl) &&                                  \
        phos_log_site_count_.fetch_add(1, std::memory_order_relaxed) < (cap))                       \
      ::phos::hijack::log_write(::phos::hijack::Level::lvl, __FILE__, __LINE__, __VA_ARGS__);       \
  } while (0)
