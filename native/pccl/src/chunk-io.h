// Chunk files: device or shared-memory ranges written to one file each (hash returned) and read back
// (hash verified before the bytes go into place), or only hashed. Bytes move on worker threads, never
// through JS.
#pragma once

#include <napi.h>

namespace phos::pccl {

// writeChunks({src, items: [{offset, length, path}], fsync}) -> Promise<{hashes, bytes, ms}>
Napi::Value writeChunks(const Napi::CallbackInfo& info);
// readChunks({dst, items: [{offset, length, path, hash}]}) -> Promise<{bytes, ms}>
Napi::Value readChunks(const Napi::CallbackInfo& info);
// hashChunks({src, items: [{offset, length}]}) -> Promise<{hashes, bytes, ms}>: writeChunks' hash of each
// range, nothing written (migration pre-copy rounds send only the chunks whose hash changed).
Napi::Value hashChunks(const Napi::CallbackInfo& info);

}  // namespace phos::pccl
