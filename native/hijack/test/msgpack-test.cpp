// msgpack codec: round trips of every type and size class, malformed inputs (never a crash), a small
// deterministic fuzz, and the shared protocol vectors from proto/vectors/frames.json.
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "check.h"
#include "frames.h"
#include "msgpack.h"

using namespace phos::hijack;

static std::vector<uint8_t> unhex(const std::string& h) {
  std::vector<uint8_t> b;
  for (size_t i = 0; i + 1 < h.size(); i += 2) b.push_back(static_cast<uint8_t>(std::stoul(h.substr(i, 2), nullptr, 16)));
  return b;
}

static bool dec(const msgpack::Writer& w, msgpack::Value* v) { return msgpack::decode(w.bytes().data(), w.bytes().size(), v); }

static void round_trips() {
  const uint64_t us[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 0xffffffffull, 0x100000000ull, 0x600000000000ull, ~0ull};
  for (uint64_t u : us) {
    msgpack::Writer w;
    w.uint(u);
    msgpack::Value v;
    uint64_t out = 0;
    CHECK(dec(w, &v) && v.as_u64(&out) && out == u);
  }
  const int64_t is[] = {-1, -32, -33, -128, -129, -32768, -32769, INT32_MIN, (int64_t)INT32_MIN - 1, INT64_MIN, 5};
  for (int64_t i : is) {
    msgpack::Writer w;
    w.sint(i);
    msgpack::Value v;
    int64_t out = 0;
    CHECK(dec(w, &v) && v.as_i64(&out) && out == i);
  }
  for (size_t n : {0ul, 5ul, 31ul, 32ul, 255ul, 256ul, 65535ul, 65536ul, 70000ul}) {
    std::string s(n, 'x');
    msgpack::Writer w;
    w.str(s);
    msgpack::Value v;
    CHECK(dec(w, &v) && v.type == msgpack::Type::str && v.s == s);
    msgpack::Writer wb;
    wb.bin(s.data(), s.size());
    CHECK(dec(wb, &v) && v.type == msgpack::Type::bin && v.s.size() == n);
  }
  for (uint32_t n : {0u, 15u, 16u, 65535u, 65536u}) {
    msgpack::Writer w;
    w.array(n);
    for (uint32_t i = 0; i < n; ++i) w.uint(i & 0x7f);
    msgpack::Value v;
    CHECK(dec(w, &v) && v.type == msgpack::Type::array && v.items.size() == n);
    msgpack::Writer m;
    m.map(n);
    for (uint32_t i = 0; i < n; ++i) { m.str("k"); m.nil(); }
    CHECK(dec(m, &v) && v.type == msgpack::Type::map && v.items.size() == 2ull * n);
  }
  msgpack::Writer w;
  w.map(4);
  w.kvb("ok", true);
  w.kv("name", "phos");
  w.str("f");
  w.f64(2.5);
  w.str("nested");
  w.array(2);
  w.nil();
  w.map(1);
  w.kv("deep", 7);
  msgpack::Value v;
  CHECK(dec(w, &v));
  CHECK(v.get("ok") && v.get("ok")->b);
  CHECK(v.get("name") && v.get("name")->s == "phos");
  CHECK(v.get("f") && v.get("f")->d == 2.5);
  uint64_t deep = 0;
  CHECK(v.get("nested") && v.get("nested")->items.size() == 2 && v.get("nested")->items[1].get("deep")->as_u64(&deep) && deep == 7);
  CHECK(!v.get("missing"));
  // JS-style integral floats read as integers; fractional ones do not.
  msgpack::Writer f;
  f.f64(4096.0);
  uint64_t fu = 0;
  CHECK(dec(f, &v) && v.as_u64(&fu) && fu == 4096);
  f.clear();
  f.f64(1.5);
  CHECK(dec(f, &v) && !v.as_u64(&fu));
}

static void malformed() {
  const char* why = nullptr;
  msgpack::Value v;
  const std::vector<std::vector<uint8_t>> bad = {
      {},                                    // empty
      {0xc1},                                // reserved
      {0xd4, 0x01, 0x02},                    // fixext
      {0xcd, 0x01},                          // truncated uint16
      {0xa5, 'a', 'b'},                      // truncated str
      {0xdb, 0xff, 0xff, 0xff, 0xff},        // str32 longer than the frame
      {0xdd, 0xff, 0xff, 0xff, 0xff},        // array32 count far beyond the frame
      {0xdf, 0x7f, 0xff, 0xff, 0xff, 0x01},  // map32 count beyond the frame
      {0x92, 0x01},                          // array short of an element
      {0x01, 0x02},                          // trailing bytes
      {0xc6, 0x00, 0x00, 0x00, 0x09, 0x00},  // bin32 longer than the frame
  };
  for (auto& b : bad) {
    why = nullptr;
    CHECK(!msgpack::decode(b.data(), b.size(), &v, &why) && why != nullptr);
  }
  // Nesting bomb: 1000 nested single-element arrays.
  std::vector<uint8_t> deep(1000, 0x91);
  deep.push_back(0x00);
  CHECK(!msgpack::decode(deep.data(), deep.size(), &v, &why));
  // Deterministic fuzz: random bytes and mutated valid frames must decode or fail, never crash.
  msgpack::Writer w;
  w.map(3);
  w.kv("v", 1);
  w.kv("t", "req");
  w.str("chunks");
  w.array(3);
  w.uint(1);
  w.uint(300);
  w.uint(70000);
  uint64_t x = 12345;
  auto rnd = [&] { x = x * 6364136223846793005ull + 1442695040888963407ull; return static_cast<uint32_t>(x >> 33); };
  for (int iter = 0; iter < 200000; ++iter) {
    std::vector<uint8_t> b = w.bytes();
    if (iter % 2) {
      b.resize(rnd() % 64);
      for (auto& c : b) c = static_cast<uint8_t>(rnd());
    } else {
      for (int k = 0; k < 3; ++k) b[rnd() % b.size()] = static_cast<uint8_t>(rnd());
      if (rnd() % 4 == 0) b.resize(rnd() % (b.size() + 1));
    }
    msgpack::decode(b.data(), b.size(), &v, &why);
    const char* code = frame_decode(b.data(), b.size(), &v, &why);
    (void)code;
  }
  CHECK(true);
}

// proto/vectors/frames.json: a tiny extraction of "name", "hex" and "error" (the file is generated,
// one key per line).
static void proto_vectors(const char* path) {
  std::ifstream in(path);
  CHECK(in.good());
  std::string line, name, hex;
  bool in_malformed = false;
  int valid = 0, malformed_n = 0;
  auto field = [](const std::string& l, const char* key, std::string* out) {
    std::string k = std::string("\"") + key + "\": \"";
    size_t p = l.find(k);
    if (p == std::string::npos) return false;
    size_t s = p + k.size(), e = l.find('"', s);
    *out = l.substr(s, e - s);
    return true;
  };
  while (std::getline(in, line)) {
    if (line.find("\"malformed\"") != std::string::npos) in_malformed = true;
    std::string s;
    if (field(line, "name", &s)) name = s;
    if (field(line, "hex", &s)) {
      hex = s;
      if (!in_malformed) {
        auto b = unhex(hex);
        msgpack::Value v;
        const char* why = nullptr;
        const char* code = frame_decode(b.data(), b.size(), &v, &why);
        if (code) std::printf("valid vector %s rejected: %s (%s)\n", name.c_str(), code, why ? why : "");
        CHECK(code == nullptr);
        const msgpack::Value* t = v.get("t");
        CHECK(t && t->s == name);
        ++valid;
      }
    }
    if (in_malformed && field(line, "error", &s)) {
      auto b = unhex(hex);
      msgpack::Value v;
      const char* why = nullptr;
      const char* code = frame_decode(b.data(), b.size(), &v, &why);
      if (!code || s != code) std::printf("malformed vector %s: got %s, want %s\n", name.c_str(), code ? code : "ok", s.c_str());
      CHECK(code && s == code);
      ++malformed_n;
    }
  }
  CHECK(valid >= 7);
  CHECK(malformed_n >= 7);
  // Spot-check one decoded value: hello's vaBase arrives as int64 and reads as uint.
  auto b = unhex("88a174a568656c6c6fa17601a3706964cd1092a36a6f62a5747261696ea6766142617365d30000600000000000a6766153697a65d30000001000000000a664657669636500ac73746167696e674279746573ce04000000");
  msgpack::Value v;
  const char* why;
  uint64_t base = 0;
  CHECK(!frame_decode(b.data(), b.size(), &v, &why) && v.get("vaBase")->as_u64(&base) && base == 0x600000000000ull);
}

int main(int argc, char** argv) {
  round_trips();
  malformed();
  if (argc > 1) proto_vectors(argv[1]);
  return phos_test::finish("msgpack-test");
}
