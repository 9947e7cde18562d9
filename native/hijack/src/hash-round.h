// Hash rounds: hash every present chunk on the GPU (helper kernels, own low-priority non-blocking
// stream, app's context) and report the chunks whose digest changed since the previous round.
#pragma once
#include <cstdint>
#include <vector>

#include <cuda.h>

namespace phos::hijack {

extern const char kChunkHashPtx[];  // generated from kernels/chunk-hash.cu at build

struct HashRoundResult {
  std::vector<uint32_t> changed;  ///< region chunk indices whose hash changed (or that are new), ascending
  uint32_t hashed = 0;            ///< chunks hashed this round
  uint32_t pointer_chunks = 0;    ///< of those, chunks holding words that point into the region
  CUresult err = CUDA_SUCCESS;    ///< first driver error, if any
  const char* what = nullptr;     ///< which step failed
};

/// Runs one round; safe to call from any thread (sets the region's context and relaxed capture mode on
/// the calling thread for the duration). Rounds are serialised. Returns false when the round failed.
bool hash_round(HashRoundResult* out);
/// A round libphos runs for itself (a freeze refreshes which chunks hold pointers): its changed chunks are
/// carried into the next round the agent asks for, so the agent's view of what changed stays complete.
bool hash_round_internal(HashRoundResult* out);

}  // namespace phos::hijack
