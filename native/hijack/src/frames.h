// Agent <-> libphos frame checks, from the generated protocol header (native/include/phos/proto.h):
// a decoded msgpack value is a frame when it is a map with v == PHOS_PROTO_VERSION, a known t, and
// every required field of that type with the right wire type. Unknown extra fields are ignored.
#pragma once
#include <cstddef>
#include <cstdint>

#include <phos/proto.h>

#include "msgpack.h"

namespace phos::hijack {

/// Decodes and checks one packet. Returns null when it is a valid frame, else the error code
/// (PHOS_ERR_BAD_FRAME or PHOS_ERR_PROTO_VERSION); `why` says what was wrong.
const char* frame_decode(const uint8_t* p, size_t n, msgpack::Value* out, const char** why);

/// Starts a frame map of `fields` entries besides v and t, and writes v and t.
void frame_begin(msgpack::Writer& w, const char* type, uint32_t fields);

}  // namespace phos::hijack
