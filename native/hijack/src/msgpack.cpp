// msgpack encoder and bounds-checked decoder (spec: github.com/msgpack/msgpack/blob/master/spec.md).
// Encoding always picks the shortest form. Decoding rejects ext types and reserved 0xc1.
#include "msgpack.h"

#include <cmath>
#include <cstring>

namespace phos::hijack::msgpack {

void Writer::uint(uint64_t v) {
  if (v < 0x80) put(static_cast<uint8_t>(v));
  else if (v <= 0xff) { put(0xcc); be(v, 1); }
  else if (v <= 0xffff) { put(0xcd); be(v, 2); }
  else if (v <= 0xffffffffull) { put(0xce); be(v, 4); }
  else { put(0xcf); be(v, 8); }
}

void Writer::sint(int64_t v) {
  if (v >= 0) { uint(static_cast<uint64_t>(v)); return; }
  if (v >= -32) put(static_cast<uint8_t>(v));
  else if (v >= INT8_MIN) { put(0xd0); be(static_cast<uint64_t>(v), 1); }
  else if (v >= INT16_MIN) { put(0xd1); be(static_cast<uint64_t>(v), 2); }
  else if (v >= INT32_MIN) { put(0xd2); be(static_cast<uint64_t>(v), 4); }
  else { put(0xd3); be(static_cast<uint64_t>(v), 8); }
}

void Writer::f64(double v) {
  uint64_t bits;
  memcpy(&bits, &v, 8);
  put(0xcb);
  be(bits, 8);
}

void Writer::str(std::string_view s) {
  size_t n = s.size();
  if (n < 32) put(static_cast<uint8_t>(0xa0 | n));
  else if (n <= 0xff) { put(0xd9); be(n, 1); }
  else if (n <= 0xffff) { put(0xda); be(n, 2); }
  else { put(0xdb); be(n, 4); }
  buf_.insert(buf_.end(), s.begin(), s.end());
}

void Writer::bin(const void* p, size_t n) {
  if (n <= 0xff) { put(0xc4); be(n, 1); }
  else if (n <= 0xffff) { put(0xc5); be(n, 2); }
  else { put(0xc6); be(n, 4); }
  const uint8_t* b = static_cast<const uint8_t*>(p);
  buf_.insert(buf_.end(), b, b + n);
}

void Writer::array(uint32_t n) {
  if (n < 16) put(static_cast<uint8_t>(0x90 | n));
  else if (n <= 0xffff) { put(0xdc); be(n, 2); }
  else { put(0xdd); be(n, 4); }
}

void Writer::map(uint32_t n) {
  if (n < 16) put(static_cast<uint8_t>(0x80 | n));
  else if (n <= 0xffff) { put(0xde); be(n, 2); }
  else { put(0xdf); be(n, 4); }
}

// -----------------------------------------------------------------------------------------------------

const Value* Value::get(std::string_view key) const {
  if (type != Type::map) return nullptr;
  for (size_t k = 0; k + 1 < items.size(); k += 2)
    if (items[k].type == Type::str && items[k].s == key) return &items[k + 1];
  return nullptr;
}

bool Value::as_u64(uint64_t* out) const {
  switch (type) {
    case Type::uint: *out = u; return true;
    case Type::f64:
      if (d >= 0 && d < 18446744073709551616.0 && std::floor(d) == d) { *out = static_cast<uint64_t>(d); return true; }
      return false;
    default: return false;
  }
}

bool Value::as_i64(int64_t* out) const {
  switch (type) {
    case Type::uint: if (u > static_cast<uint64_t>(INT64_MAX)) return false; *out = static_cast<int64_t>(u); return true;
    case Type::sint: *out = i; return true;
    case Type::f64:
      if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && std::floor(d) == d) {
        *out = static_cast<int64_t>(d);
        return true;
      }
      return false;
    default: return false;
  }
}

namespace {

struct Reader {
  const uint8_t* p;
  size_t n, pos = 0;
  uint32_t items = 0;
  DecodeLimits lim;
  const char* why = nullptr;

  bool fail(const char* w) { if (!why) why = w; return false; }
  size_t left() const { return n - pos; }
  bool be(int k, uint64_t* v) {
    if (left() < static_cast<size_t>(k)) return fail("truncated");
    uint64_t x = 0;
    for (int i = 0; i < k; ++i) x = (x << 8) | p[pos++];
    *v = x;
    return true;
  }
  bool bytes(uint64_t len, std::string_view* s) {
    if (len > left()) return fail("string or bin longer than the frame");
    *s = std::string_view(reinterpret_cast<const char*>(p + pos), len);
    pos += len;
    return true;
  }
  bool seq(uint64_t count, bool is_map, Value* v, uint32_t depth) {
    uint64_t total = is_map ? count * 2 : count;
    // Every element takes at least one byte: a count beyond the bytes left is malformed.
    if (count > left() || total > left()) return fail("container count exceeds the frame");
    v->type = is_map ? Type::map : Type::array;
    v->items.resize(total);
    for (uint64_t k = 0; k < total; ++k)
      if (!value(&v->items[k], depth + 1)) return false;
    return true;
  }
  bool value(Value* v, uint32_t depth) {
    if (depth > lim.max_depth) return fail("nesting too deep");
    if (++items > lim.max_items) return fail("too many values");
    if (!left()) return fail("truncated");
    uint8_t t = p[pos++];
    uint64_t x;
    if (t <= 0x7f) { v->type = Type::uint; v->u = t; return true; }
    if (t >= 0xe0) { v->type = Type::sint; v->i = static_cast<int8_t>(t); return true; }
    if ((t & 0xf0) == 0x80) return seq(t & 0x0f, true, v, depth);
    if ((t & 0xf0) == 0x90) return seq(t & 0x0f, false, v, depth);
    if ((t & 0xe0) == 0xa0) { v->type = Type::str; return bytes(t & 0x1f, &v->s); }
    switch (t) {
      case 0xc0: v->type = Type::nil; return true;
      case 0xc2: v->type = Type::boolean; v->b = false; return true;
      case 0xc3: v->type = Type::boolean; v->b = true; return true;
      case 0xc4: case 0xc5: case 0xc6:
        if (!be(1 << (t - 0xc4), &x)) return false;
        v->type = Type::bin;
        return bytes(x, &v->s);
      case 0xca: {
        if (!be(4, &x)) return false;
        uint32_t b32 = static_cast<uint32_t>(x);
        float f;
        memcpy(&f, &b32, 4);
        v->type = Type::f64;
        v->d = f;
        return true;
      }
      case 0xcb: {
        if (!be(8, &x)) return false;
        memcpy(&v->d, &x, 8);
        v->type = Type::f64;
        return true;
      }
      case 0xcc: case 0xcd: case 0xce: case 0xcf:
        if (!be(1 << (t - 0xcc), &x)) return false;
        v->type = Type::uint;
        v->u = x;
        return true;
      case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int k = 1 << (t - 0xd0);
        if (!be(k, &x)) return false;
        int64_t s = k == 8 ? static_cast<int64_t>(x) : static_cast<int64_t>(x << (64 - 8 * k)) >> (64 - 8 * k);
        if (s >= 0) { v->type = Type::uint; v->u = static_cast<uint64_t>(s); }
        else { v->type = Type::sint; v->i = s; }
        return true;
      }
      case 0xd9: case 0xda: case 0xdb:
        if (!be(1 << (t - 0xd9), &x)) return false;
        v->type = Type::str;
        return bytes(x, &v->s);
      case 0xdc: case 0xdd:
        if (!be(t == 0xdc ? 2 : 4, &x)) return false;
        return seq(x, false, v, depth);
      case 0xde: case 0xdf:
        if (!be(t == 0xde ? 2 : 4, &x)) return false;
        return seq(x, true, v, depth);
      default:
        return fail("unsupported type (ext or reserved)");
    }
  }
};

}  // namespace

bool decode(const uint8_t* p, size_t n, Value* out, const char** why, DecodeLimits lim) {
  *out = Value{};
  if (!p && n) { if (why) *why = "null buffer"; return false; }
  Reader r{p, n, 0, 0, lim, nullptr};
  bool ok = r.value(out, 0);
  if (ok && r.pos != n) ok = r.fail("trailing bytes after the value");
  if (!ok) {
    *out = Value{};
    if (why) *why = r.why ? r.why : "malformed";
  }
  return ok;
}

}  // namespace phos::hijack::msgpack
