// A small msgpack codec for agent frames: nil, bool, int/uint, float (decode; encode f64), str, bin,
// array, map. The decoder bounds-checks every read, limits depth and element counts by the bytes left,
// and turns anything malformed into an error: never a crash, never an unbounded allocation.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace phos::hijack::msgpack {

class Writer {
 public:
  void nil() { put(0xc0); }
  void boolean(bool v) { put(v ? 0xc3 : 0xc2); }
  void uint(uint64_t v);
  void sint(int64_t v);
  void f64(double v);
  void str(std::string_view s);
  void bin(const void* p, size_t n);
  void array(uint32_t n);
  void map(uint32_t n);
  // key + value conveniences for maps
  void kv(std::string_view k, uint64_t v) { str(k); uint(v); }
  void kv(std::string_view k, std::string_view v) { str(k); str(v); }
  void kvb(std::string_view k, bool v) { str(k); boolean(v); }
  void kvi(std::string_view k, int64_t v) { str(k); sint(v); }

  const std::vector<uint8_t>& bytes() const { return buf_; }
  void clear() { buf_.clear(); }

 private:
  void put(uint8_t b) { buf_.push_back(b); }
  void be(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) buf_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t> buf_;
};

enum class Type : uint8_t { nil, boolean, uint, sint, f64, str, bin, array, map };

/// A decoded value. Strings and bins point into the decoded buffer (which must outlive the value).
struct Value {
  Type type = Type::nil;
  bool b = false;
  uint64_t u = 0;   // uint
  int64_t i = 0;    // sint (negative only: non-negative ints decode as uint)
  double d = 0;
  std::string_view s;            // str and bin
  std::vector<Value> items;      // array items; map: key, value, key, value, ...

  /// Map lookup by string key; null if absent or this is not a map.
  const Value* get(std::string_view key) const;
  /// Unsigned view: uint, non-negative sint, or an integral non-negative float (JS numbers).
  bool as_u64(uint64_t* out) const;
  bool as_i64(int64_t* out) const;
  bool is_str() const { return type == Type::str; }
};

struct DecodeLimits {
  uint32_t max_depth = 16;
  uint32_t max_items = 1u << 20;  // total values in one frame
};

/// Decodes exactly one value that spans the whole buffer. Returns false (and a reason) on malformed
/// input, trailing bytes, or limits exceeded.
bool decode(const uint8_t* p, size_t n, Value* out, const char** why = nullptr, DecodeLimits lim = {});

}  // namespace phos::hijack::msgpack
