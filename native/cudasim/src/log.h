// cudasim logging: one stderr sink, prefix `cudasim[pid]: `, level from PHOS_LOG
// (error|warn|info|debug, default warn), file:line on errors, repeats capped by callers via once().
#pragma once

#include <string_view>

namespace phos::cudasim::log {

enum class Level { error = 0, warn = 1, info = 2, debug = 3 };

bool enabled(Level level);
void write(Level level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
// True the first time `key` is seen in this process: "log once" for unsupported calls and kernels.
bool first_time(std::string_view key);

}  // namespace phos::cudasim::log

#define CUSIM_LOG(lvl, ...)                                                           \
  do {                                                                               \
    if (::phos::cudasim::log::enabled(::phos::cudasim::log::Level::lvl))             \
      ::phos::cudasim::log::write(::phos::cudasim::log::Level::lvl, __FILE__, __LINE__, \
                                  __VA_ARGS__);                                      \
  } while (0)
#define CUSIM_ERROR(...) CUSIM_LOG(error, __VA_ARGS__)
#define CUSIM_WARN(...) CUSIM_LOG(warn, __VA_ARGS__)
#define CUSIM_INFO(...) CUSIM_LOG(info, __VA_ARGS__)
#define CUSIM_DEBUG(...) CUSIM_LOG(debug, __VA_ARGS__)
