// A small PTX reader: it understands comments, `.entry NAME ( .param ... )` lists, `.shared`
// declarations inside an entry body and module-scope `.global`/`.const` variables. Everything else
// (instructions, .func bodies, directives) is skipped by brace matching.
#include "ptx-parse.h"

#include <cctype>
#include <cstdlib>

namespace phos::cudasim::ptx {
namespace {

std::string strip_comments(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); i++) {
    if (in[i] == '/' && i + 1 < in.size() && in[i + 1] == '/') {
      while (i < in.size() && in[i] != '\n') i++;
      out.push_back('\n');
    } else if (in[i] == '/' && i + 1 < in.size() && in[i + 1] == '*') {
      i += 2;
      while (i + 1 < in.size() && !(in[i] == '*' && in[i + 1] == '/')) i++;
      i++;
      out.push_back(' ');
    } else if (in[i] == '"') {  // string literals (.file) may hold "//"
      out.push_back(in[i++]);
      while (i < in.size() && in[i] != '"') out.push_back(in[i++]);
      if (i < in.size()) out.push_back('"');
    } else {
      out.push_back(in[i]);
    }
  }
  return out;
}

bool ident_char(char c) {
  return isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' || c == '.' || c == '%';
}

// Splits into tokens: identifiers/directives (with dots), numbers, and single punctuation.
std::vector<std::string> tokenize(std::string_view s) {
  std::vector<std::string> t;
  for (size_t i = 0; i < s.size();) {
    char c = s[i];
    if (isspace(static_cast<unsigned char>(c))) {
      i++;
    } else if (c == '"') {
      size_t j = s.find('"', i + 1);
      j = j == std::string_view::npos ? s.size() : j + 1;
      t.emplace_back(s.substr(i, j - i));
      i = j;
    } else if (ident_char(c)) {
      size_t j = i;
      while (j < s.size() && ident_char(s[j])) j++;
      t.emplace_back(s.substr(i, j - i));
      i = j;
    } else {
      t.emplace_back(1, c);
      i++;
    }
  }
  return t;
}

// Element size of a PTX fundamental type (".u32" -> 4), 0 if `tok` is not a type.
uint32_t type_size(const std::string &tok) {
  static const struct { const char *name; uint32_t size; } kTypes[] = {
      {".b8", 1}, {".u8", 1}, {".s8", 1}, {".pred", 1}, {".b16", 2}, {".u16", 2}, {".s16", 2},
      {".f16", 2}, {".bf16", 2}, {".b32", 4}, {".u32", 4}, {".s32", 4}, {".f32", 4},
      {".f16x2", 4}, {".bf16x2", 4}, {".b64", 8}, {".u64", 8}, {".s64", 8}, {".f64", 8},
      {".b128", 16}, {".tf32", 4}, {".e4m3", 1}, {".e5m2", 1}};
  for (auto &t : kTypes)
    if (tok == t.name) return t.size;
  return 0;
}

struct Cursor {
  const std::vector<std::string> &t;
  size_t i = 0;
  bool done() const { return i >= t.size(); }
  const std::string &peek() const { static const std::string e; return done() ? e : t[i]; }
  bool eat(const char *s) {
    if (peek() != s) return false;
    i++;
    return true;
  }
};

// Parses one declaration after its state space token (.param/.shared/.global): attributes, type,
// name, optional [N] (and [N][M]). Stops before the terminating ',' ')' ';' or '='.
bool parse_decl(Cursor &c, Param *p, std::string *err) {
  uint32_t elem = 0, align = 0, vec = 1;
  bool ptr = false;
  while (!c.done()) {
    const std::string &tok = c.peek();
    if (tok == ".ptr") {
      ptr = true;
      c.i++;
    } else if (tok == ".align") {
      c.i++;
      // After .ptr, .align is the pointee's alignment (PTX ISA, kernel parameter attributes).
      if (!ptr) align = static_cast<uint32_t>(strtoul(c.peek().c_str(), nullptr, 0));
      c.i++;
    } else if (tok == ".v2" || tok == ".v4" || tok == ".v8") {
      vec = static_cast<uint32_t>(tok[2] - '0');
      c.i++;
    } else if (uint32_t sz = type_size(tok)) {
      elem = sz;
      c.i++;
    } else if (!tok.empty() && tok[0] == '.') {
      c.i++;  // .ptr, .global, .const, .local, .shared, .restrict ...
    } else {
      break;
    }
  }
  if (elem == 0 || c.done()) {
    *err = "declaration without a type near token " + std::to_string(c.i);
    return false;
  }
  p->name = c.t[c.i++];
  uint64_t count = 1;
  while (c.eat("[")) {
    count *= c.peek() == "]" ? 0 : strtoull(c.peek().c_str(), nullptr, 0);
    if (c.peek() != "]") c.i++;
    if (!c.eat("]")) {
      *err = "unterminated [ in " + p->name;
      return false;
    }
  }
  p->size = static_cast<uint32_t>(elem * vec * count);
  p->align = align ? align : elem * vec;
  return true;
}

bool parse_params(Cursor &c, Entry *e, std::string *err) {
  uint32_t off = 0;
  while (!c.done() && !c.eat(")")) {
    if (!c.eat(".param")) {
      *err = "expected .param in " + e->name + ", got " + c.peek();
      return false;
    }
    Param p;
    if (!parse_decl(c, &p, err)) return false;
    off = (off + p.align - 1) / p.align * p.align;
    p.offset = off;
    off += p.size;
    e->params.push_back(p);
    c.eat(",");
  }
  e->param_bytes = off;
  return true;
}

// Walks the entry body (after '{') to its closing brace, summing static .shared declarations.
bool parse_body(Cursor &c, Entry *e, std::string *err) {
  int depth = 1;
  bool prev_extern = false;
  uint32_t shared = 0;
  while (!c.done() && depth > 0) {
    const std::string &tok = c.t[c.i++];
    if (tok == "{") depth++;
    else if (tok == "}") depth--;
    else if (tok == ".shared" && !prev_extern && (c.i < 2 || c.t[c.i - 2] == ";" ||
                                                   c.t[c.i - 2] == "{" || c.t[c.i - 2] == "}")) {
      Param p;
      if (!parse_decl(c, &p, err)) return false;
      shared = (shared + p.align - 1) / p.align * p.align + p.size;
    }
    prev_extern = tok == ".extern";
  }
  e->static_shared = shared;
  return depth == 0;
}

bool parse_entry(Cursor &c, Module *m, std::string *err) {
  Entry e;
  if (c.done()) return false;
  e.name = c.t[c.i++];
  if (c.eat("(") && !parse_params(c, &e, err)) return false;
  while (!c.done() && c.peek() != "{" && c.peek() != ";") c.i++;  // .maxntid, .reqntid, ...
  if (c.eat("{") && !parse_body(c, &e, err)) {
    if (err->empty()) *err = "unterminated body of " + e.name;
    return false;
  }
  m->entries.push_back(std::move(e));
  return true;
}

void skip_block(Cursor &c) {
  while (!c.done() && c.peek() != "{" && c.peek() != ";") c.i++;
  if (!c.eat("{")) return;
  for (int depth = 1; !c.done() && depth > 0; c.i++) {
    if (c.t[c.i] == "{") depth++;
    else if (c.t[c.i] == "}") depth--;
  }
}

}  // namespace

bool parse(std::string_view text, Module *out, std::string *error) {
  std::string clean = strip_comments(text);
  auto toks = tokenize(clean);
  Cursor c{toks};
  error->clear();
  while (!c.done()) {
    const std::string &tok = c.t[c.i++];
    if (tok == ".entry") {
      if (!parse_entry(c, out, error)) return false;
    } else if (tok == ".func") {
      skip_block(c);
    } else if ((tok == ".global" || tok == ".const") && (c.i < 2 || c.t[c.i - 2] != ".extern")) {
      Param p;
      std::string ignored;
      if (parse_decl(c, &p, &ignored)) out->globals.push_back(Global{p.name, p.size, p.align});
      while (!c.done() && !c.eat(";")) c.i++;
    }
  }
  if (out->entries.empty() && text.find(".version") == std::string_view::npos) {
    *error = "not PTX text (no .version, no .entry)";
    return false;
  }
  return true;
}

}  // namespace phos::cudasim::ptx
