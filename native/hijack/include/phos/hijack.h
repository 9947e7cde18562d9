/* libphos public surface besides the CUDA driver names it exports: diagnostics and test hooks, found by
 * dlsym(RTLD_DEFAULT, "phos_hijack_...") from tests, benchmarks and the H200 acceptance script. */
#ifndef PHOS_HIJACK_H
#define PHOS_HIJACK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Counters and accounting. Callers set `size` to sizeof(phos_hijack_stats); fields beyond it are not
 * written. */
typedef struct phos_hijack_stats {
  uint32_t size;
  uint32_t region_ok;           /* 1: allocations are served from the VA region */
  uint64_t va_base, va_size;
  uint64_t proc_queries;        /* cuGetProcAddress calls answered */
  uint64_t proc_wrapped;        /* of those, answered with a libphos wrapper */
  uint64_t dlsym_wrapped;       /* dlsym answers replaced by a wrapper */
  uint64_t launches_tracked;    /* launches seen while tracking was armed */
  uint64_t launches_widened;    /* of those, widened to "all" */
  uint64_t slab_bytes, alloc_bytes, app_handle_bytes, passthrough_bytes, internal_bytes;
  uint64_t driver_used_bytes, baseline_used_bytes;
  int64_t unexplained_bytes;
  uint32_t slabs, allocations, chunks_present, agent_connected;
} phos_hijack_stats;

/* pre: out != NULL, out->size set. Returns 0, or a CUresult from cuMemGetInfo (other fields filled). */
int phos_hijack_get_stats(phos_hijack_stats *out);

/* Arms (on != 0) or disarms launch tracking. Returns the previous state. */
int phos_hijack_arm(int on);

/* Runs one hash round now (as the agent's hash-round op). Writes up to `cap` changed chunk indices to
 * `changed` and their count to *n_changed (which may exceed cap). Returns 0 or a CUresult. */
int phos_hijack_hash_round(uint32_t *changed, uint32_t cap, uint32_t *n_changed);

#ifdef __cplusplus
}
#endif
#endif
