// PTX text -> kernel entries with their parameter layout, computed as the real ABI lays out the
// parameter buffer (each parameter aligned to its .align or its element size).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace phos::cudasim::ptx {

struct Param {
  std::string name;
  uint32_t offset = 0;
  uint32_t size = 0;
  uint32_t align = 1;
};

struct Entry {
  std::string name;
  std::vector<Param> params;
  uint32_t param_bytes = 0;    // end of the last parameter
  uint32_t static_shared = 0;  // sum of the entry's non-extern .shared declarations (aligned)
};

struct Global {
  std::string name;
  uint32_t size = 0;
  uint32_t align = 1;
};

struct Module {
  std::vector<Entry> entries;
  std::vector<Global> globals;  // module-scope .global / .const variables
};

// Returns true on success; on failure `error` says what was not understood and where.
bool parse(std::string_view text, Module *out, std::string *error);

}  // namespace phos::cudasim::ptx
