/* cudasim kernel-plugin ABI: how CPU implementations of PTX entries are registered with the simulated
 * driver. A plugin is a shared library exporting `cudasim_plugin_register`; cudasim dlopens every
 * plugin it finds (see PHOS_SIM_KERNELS below) at cuInit and calls it once. The simulated driver owns
 * everything else (PTX parsing, parameter layout, streams, the block loop). */
#ifndef PHOS_CUDASIM_H
#define PHOS_CUDASIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CUDASIM_ABI_VERSION 1u

/* One launch as a CPU kernel sees it. Device pointers are plain host addresses in cudasim, so a
 * kernel casts a 64-bit parameter to a pointer and dereferences it. */
typedef struct cudasim_launch {
  uint32_t size;              /* sizeof(cudasim_launch) */
  uint32_t grid[3];           /* gridDim x, y, z */
  uint32_t block[3];          /* blockDim x, y, z */
  uint32_t shared_bytes;      /* dynamic shared memory requested */
  uint32_t num_params;        /* entries in param_offset / param_size (from the PTX .param list) */
  const uint32_t *param_offset;
  const uint32_t *param_size;
  const uint8_t *params;      /* packed parameter buffer in the PTX layout (same as CUDA's) */
} cudasim_launch;

/* Runs one block (bx, by, bz) of a launch: loops over the block's threads itself. cudasim may call it
 * for different blocks of the same launch concurrently from a small thread pool, so a kernel must not
 * keep unsynchronised state across blocks (as on a GPU). `shared` is the block's shared memory
 * (static size declared at registration + dynamic), zeroed per block. */
typedef void (*cudasim_block_fn)(const cudasim_launch *launch, uint32_t bx, uint32_t by, uint32_t bz,
                                 void *shared);

typedef struct cudasim_host_api {
  uint32_t size;              /* sizeof(cudasim_host_api) */
  uint32_t abi_version;       /* CUDASIM_ABI_VERSION */
  /* Binds a PTX entry name to a CPU implementation. static_shared: bytes of __shared__ the kernel
   * declares statically. Returns 0, or -EEXIST when the name is already bound. */
  int (*register_kernel)(const char *entry, cudasim_block_fn fn, uint32_t static_shared);
} cudasim_host_api;

/* Exported by every plugin. Returns 0 on success. */
typedef int (*cudasim_plugin_register_fn)(const cudasim_host_api *api);
#define CUDASIM_PLUGIN_SYMBOL "cudasim_plugin_register"

/* Reads parameter i of a launch as type T (C helper; C++ users may prefer a template). */
#define CUDASIM_PARAM(launch, i, T) (*(const T *)((launch)->params + (launch)->param_offset[(i)]))

/* Plugin search: PHOS_SIM_KERNELS is a colon-separated list of .so files or directories (every *.so in
 * a directory); by default cudasim loads every *.so in the directory `kernels/` beside libcuda.so.1. */

#ifdef __cplusplus
}
#endif
#endif
