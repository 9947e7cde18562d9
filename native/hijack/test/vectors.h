// Shared hash test vectors (hash-vectors.txt): each line `name generator words seed expected-hex`.
// Generators: zero (all 0), iota (w[i] = i + seed), const (w[i] = seed), lcg (64-bit LCG from seed).
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

struct HashVector {
  std::string name, gen;
  uint64_t words = 0, seed = 0, expected = 0;
};

inline std::vector<HashVector> load_vectors(const char* path) {
  std::vector<HashVector> v;
  FILE* f = std::fopen(path, "r");
  if (!f) return v;
  char line[512];
  while (std::fgets(line, sizeof line, f)) {
    if (line[0] == '#' || line[0] == '\n') continue;
    char name[128], gen[32];
    unsigned long long words, seed, exp;
    if (std::sscanf(line, "%127s %31s %llu %llx %llx", name, gen, &words, &seed, &exp) == 5)
      v.push_back({name, gen, words, seed, exp});
  }
  std::fclose(f);
  return v;
}

inline void fill_vector(const HashVector& hv, uint64_t* w) {
  uint64_t x = hv.seed;
  for (uint64_t i = 0; i < hv.words; ++i) {
    if (hv.gen == "zero") w[i] = 0;
    else if (hv.gen == "iota") w[i] = i + hv.seed;
    else if (hv.gen == "const") w[i] = hv.seed;
    else {  // lcg
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      w[i] = x;
    }
  }
}
