/* Test harness for trust_openssl.c: `trust-check TRUSTED.pem BUNDLE.pem` prints the roots the device would
 * trust after receiving BUNDLE (test/firmware/c-libmosquitto-trust.test.ts runs it on crafted bundles). */
#include <stdio.h>
#include <stdlib.h>

#include "../src/trust_openssl.h"

static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 1 << 16, n = 0;
  char *data = malloc(cap + 1);
  size_t got;
  while (data && (got = fread(data + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      char *bigger = realloc(data, cap * 2 + 1);
      if (!bigger) { free(data); data = NULL; break; }
      data = bigger;
      cap *= 2;
    }
  }
  fclose(f);
  if (data) data[n] = '\0';
  *len = n;
  return data;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: trust-check TRUSTED.pem BUNDLE.pem\n");
    return 2;
  }
  size_t trusted_len, bundle_len;
  char *trusted = read_all(argv[1], &trusted_len), *bundle = read_all(argv[2], &bundle_len);
  if (!trusted || !bundle) {
    fprintf(stderr, "trust-check: cannot read the input files\n");
    return 2;
  }
  char *roots;
  int count;
  int changed = fg_trust_update(trusted, bundle, bundle_len, &roots, &count);
  if (changed < 0) return 1;
  fputs(roots, stdout);
  fprintf(stderr, "%d root(s), %s\n", count, changed ? "changed" : "unchanged");
  free(roots), free(trusted), free(bundle);
  return 0;
}
