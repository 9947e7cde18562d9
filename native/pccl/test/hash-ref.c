/* Prints libphos's own CPU reference hash (native/hijack/src/chunk-hash.h, phos_chunk_hash_ref) of the
 * file argv[1], whose length must be a multiple of 8: the chunk-io test checks pccl's hashes against it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../hijack/src/chunk-hash.h"

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  FILE *f = fopen(argv[1], "rb");
  if (!f) return perror(argv[1]), 1;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  if (n < 0 || n % 8) return fprintf(stderr, "length %ld is not a multiple of 8\n", n), 1;
  uint64_t *w = malloc((size_t)n + 8);
  if (fread(w, 1, (size_t)n, f) != (size_t)n) return perror("read"), 1;
  printf("%016llx\n", (unsigned long long)phos_chunk_hash_ref(w, (uint64_t)n / 8, 0, 0, NULL));
  return 0;
}
