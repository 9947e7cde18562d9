// Frame validation table: one row per field, mirroring proto/src/frames.ts through proto.h's names.
#include "frames.h"

#include <cstring>
#include <string_view>

namespace phos::hijack {
namespace {

enum class K { uint, str, boolean, op, kind, uint_array, err };
struct Field {
  const char* type;
  const char* key;
  K kind;
  bool optional;
};

const Field kFields[] = {
    {PHOS_FRAME_HELLO, PHOS_F_HELLO_PID, K::uint, false},
    {PHOS_FRAME_HELLO, PHOS_F_HELLO_JOB, K::str, false},
    {PHOS_FRAME_HELLO, PHOS_F_HELLO_VABASE, K::uint, false},
    {PHOS_FRAME_HELLO, PHOS_F_HELLO_VASIZE, K::uint, false},
    {PHOS_FRAME_HELLO, PHOS_F_HELLO_DEVICE, K::uint, false},
    {PHOS_FRAME_HELLO, PHOS_F_HELLO_STAGINGBYTES, K::uint, false},
    {PHOS_FRAME_WELCOME, PHOS_F_WELCOME_NODE, K::str, false},
    {PHOS_FRAME_ALLOC, PHOS_F_ALLOC_ID, K::uint, false},
    {PHOS_FRAME_ALLOC, PHOS_F_ALLOC_VA, K::uint, false},
    {PHOS_FRAME_ALLOC, PHOS_F_ALLOC_SIZE, K::uint, false},
    {PHOS_FRAME_FREE, PHOS_F_FREE_ID, K::uint, false},
    {PHOS_FRAME_REQ, PHOS_F_REQ_ID, K::uint, false},
    {PHOS_FRAME_REQ, PHOS_F_REQ_OP, K::op, false},
    {PHOS_FRAME_REQ, PHOS_F_REQ_CHUNKS, K::uint_array, true},
    {PHOS_FRAME_REP, PHOS_F_REP_ID, K::uint, false},
    {PHOS_FRAME_REP, PHOS_F_REP_OK, K::boolean, false},
    {PHOS_FRAME_REP, PHOS_F_REP_ERR, K::err, true},
    {PHOS_FRAME_EVENT, PHOS_F_EVENT_KIND, K::kind, false},
    {PHOS_FRAME_EVENT, PHOS_F_EVENT_CHUNKS, K::uint_array, true},
    {PHOS_FRAME_EVENT, PHOS_F_EVENT_MESSAGE, K::str, true},
};

const char* const kTypes[] = {PHOS_FRAME_HELLO, PHOS_FRAME_WELCOME, PHOS_FRAME_ALLOC, PHOS_FRAME_FREE,
                              PHOS_FRAME_REQ,   PHOS_FRAME_REP,     PHOS_FRAME_EVENT};
const char* const kOps[] = {PHOS_OP_STATUS, PHOS_OP_HASH_ROUND, PHOS_OP_STREAM_OUT, PHOS_OP_SNAPSHOT,
                            PHOS_OP_FREEZE, PHOS_OP_THAW,       PHOS_OP_GATE,       PHOS_OP_ROLLBACK};
const char* const kKinds[] = {"gate-wait", "degraded", "misspeculation"};

template <size_t N>
bool one_of(const msgpack::Value& v, const char* const (&set)[N]) {
  if (!v.is_str()) return false;
  for (const char* s : set)
    if (v.s == s) return true;
  return false;
}

bool check(const msgpack::Value& v, K k) {
  uint64_t u;
  switch (k) {
    case K::uint: return v.as_u64(&u);
    case K::str: return v.is_str();
    case K::boolean: return v.type == msgpack::Type::boolean;
    case K::op: return one_of(v, kOps);
    case K::kind: return one_of(v, kKinds);
    case K::uint_array:
      if (v.type != msgpack::Type::array) return false;
      for (auto& i : v.items)
        if (!i.as_u64(&u)) return false;
      return true;
    case K::err: {
      if (v.type != msgpack::Type::map) return false;
      const msgpack::Value* c = v.get("code");
      const msgpack::Value* m = v.get("message");
      return c && c->is_str() && m && m->is_str();
    }
  }
  return false;
}

}  // namespace

const char* frame_decode(const uint8_t* p, size_t n, msgpack::Value* out, const char** why) {
  const char* dwhy = nullptr;
  *why = nullptr;
  if (!msgpack::decode(p, n, out, &dwhy)) { *why = dwhy; return PHOS_ERR_BAD_FRAME; }
  if (out->type != msgpack::Type::map) { *why = "frame is not a map"; return PHOS_ERR_BAD_FRAME; }
  const msgpack::Value* v = out->get(PHOS_KEY_VERSION);
  uint64_t ver;
  if (!v || !v->as_u64(&ver)) { *why = "missing or bad v"; return PHOS_ERR_BAD_FRAME; }
  if (ver != PHOS_PROTO_VERSION) { *why = "unsupported protocol version"; return PHOS_ERR_PROTO_VERSION; }
  const msgpack::Value* t = out->get(PHOS_KEY_TYPE);
  if (!t || !one_of(*t, kTypes)) { *why = "missing or unknown t"; return PHOS_ERR_BAD_FRAME; }
  for (const Field& f : kFields) {
    if (t->s != f.type) continue;
    const msgpack::Value* fv = out->get(f.key);
    if (!fv || (f.optional && fv->type == msgpack::Type::nil)) {
      if (f.optional) continue;
      *why = "missing field";
      return PHOS_ERR_BAD_FRAME;
    }
    if (!check(*fv, f.kind)) { *why = "field has the wrong type"; return PHOS_ERR_BAD_FRAME; }
  }
  return nullptr;
}

void frame_begin(msgpack::Writer& w, const char* type, uint32_t fields) {
  w.clear();
  w.map(fields + 2);
  w.kv(PHOS_KEY_VERSION, PHOS_PROTO_VERSION);
  w.kv(PHOS_KEY_TYPE, type);
}

}  // namespace phos::hijack
