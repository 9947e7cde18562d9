// Minimal named checks for the hijack tests (the test-api.c habit): CHECK prints file:line and the
// expression on failure and counts; finish() prints a summary and gives the exit status.
#pragma once
#include <cstdio>

namespace phos_test {
inline int g_failed = 0, g_passed = 0;
inline int finish(const char* name) {
  std::printf("%s: %d passed, %d failed\n", name, g_passed, g_failed);
  return g_failed ? 1 : 0;
}
}  // namespace phos_test

#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (cond) ++phos_test::g_passed;                                                  \
    else { ++phos_test::g_failed; std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } \
  } while (0)
