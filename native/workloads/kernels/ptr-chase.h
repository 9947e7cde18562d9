/* ptr-chase's table entry and hashing, shared by the kernel, its CPU twin and the host model. */
#ifndef PHOS_WORKLOADS_PTR_CHASE_H
#define PHOS_WORKLOADS_PTR_CHASE_H

#include "mix.h"

/* One buffer as the table in device memory describes it. 32 bytes, no padding. */
typedef struct wl_chase_entry {
  uint64_t ptr; /* device address of the buffer */
  uint64_t len; /* words (uint64) in the buffer, > 0 */
  uint64_t id;  /* stable buffer id: digests are indexed by it */
  uint64_t pad; /* zero */
} wl_chase_entry;

/* Walker w's starting state in a step. */
WL_FN uint64_t wl_chase_seed(uint64_t step, uint64_t w) { return wl_mix64(step * WL_GOLDEN + w + 1); }

/* The Fisher-Yates index for position i (> 0) of the shuffle after `step`. */
WL_FN uint64_t wl_chase_pick(uint64_t step, uint64_t i) { return wl_mix64((step << 32) ^ i ^ WL_LCG_ADD) % (i + 1); }

#endif
