// Tracking: the region's 2 MiB chunk table (per chunk: users, pointer extent, speculated-written,
// holds-pointers, fresh, hashes) and the launch hooks that fill the speculated set while armed.
#pragma once
#include <atomic>
#include <cstdint>
#include <vector>

#include <cuda.h>

namespace phos::hijack {

constexpr uint64_t kChunkShift = 21;
constexpr uint64_t kChunkBytes = 1ull << kChunkShift;  // 2 MiB: the VMM granularity on H200

/// Per-chunk state. `users` and the extent are written under the VMM lock; the launch path reads them
/// without a lock. `spec` is set on the extent's first chunk only (O(1) per pointer), consumers expand.
struct Chunk {
  std::atomic<uint32_t> users{0};      ///< live allocations/mappings with bytes here; 0 = not present
  std::atomic<uint32_t> ext_first{0};  ///< first chunk a pointer into this chunk may reach
  std::atomic<uint32_t> ext_last{0};   ///< last chunk (inclusive)
  std::atomic<uint8_t> spec{0};        ///< a launch since the last collect had a pointer into this extent
  std::atomic<uint8_t> holds_ptrs{0};  ///< the last hash round found words pointing into the region
  std::atomic<uint8_t> fresh{0};       ///< became present since the last hash round
  uint64_t last_hash = 0;              ///< digest from the last hash round (hash-round owner only)
  uint64_t shipped_hash = 0;           ///< digest of the bytes last shipped; 0 = never shipped
};

/// Sets up the chunk table for the region [base, base+size). Called once, under the VMM lock.
void chunks_init(uint64_t base, uint64_t size);
/// Chunk table, or null before the region exists. `n` receives the chunk count.
Chunk* chunks(uint64_t* base, uint32_t* n);
/// [va, va+len) gained / lost one user; pointers into it may reach chunks [ext_first, ext_last].
void chunks_add(uint64_t va, uint64_t len, uint32_t ext_first, uint32_t ext_last);
void chunks_remove(uint64_t va, uint64_t len);
inline uint32_t chunk_of(uint64_t base, uint64_t va) { return static_cast<uint32_t>((va - base) >> kChunkShift); }

/// Launch tracking is armed only while a snapshot, migration or on-demand restore needs it.
extern std::atomic<bool> g_track_armed;
void track_arm(bool on);

struct TrackStats {
  std::atomic<uint64_t> launches{0};  ///< launches seen while armed
  std::atomic<uint64_t> widened{0};   ///< of those, widened to "all" (graph, unknown kernel, pointer chunk)
  std::atomic<uint64_t> pointers{0};  ///< parameter words that fell in a present chunk
};
extern TrackStats g_track_stats;

/// Takes the speculated set accumulated since the last collect: present chunks in every marked extent
/// (sorted, unique), or all present chunks when something widened to "all". Clears the marks.
void spec_collect(std::vector<uint32_t>* out, bool* all);
/// Chunks the speculated set covers now, without clearing it (status's dirty estimate).
uint32_t spec_estimate();
/// Number of present chunks.
uint32_t chunks_present();

// Hooks (exports.cpp forwards here).
CUresult launch_kernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                       unsigned shmem, CUstream s, void** params, void** extra, bool ptsz);
CUresult launch_kernel_ex(const CUlaunchConfig* cfg, CUfunction f, void** params, void** extra, bool ptsz);
CUresult launch_cooperative(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                            unsigned bz, unsigned shmem, CUstream s, void** params, bool ptsz);
CUresult graph_launch(CUgraphExec g, CUstream s, bool ptsz);
CUresult library_get_kernel(CUkernel* k, CUlibrary lib, const char* name);
CUresult library_unload(CUlibrary lib);
CUresult module_unload(CUmodule mod);

}  // namespace phos::hijack
