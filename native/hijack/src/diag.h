// Diagnostics behind the phos_hijack_* exports (include/phos/hijack.h).
#pragma once
#include <cstdint>

#include <phos/hijack.h>

namespace phos::hijack {

int get_stats(phos_hijack_stats* out);
int arm(int on);
int run_hash_round(uint32_t* changed, uint32_t cap, uint32_t* n);

}  // namespace phos::hijack
