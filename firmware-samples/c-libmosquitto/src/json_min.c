#include "json_min.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *skip_ws(const char *p) {
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
  return p;
}

static int hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

static size_t put_utf8(char *dst, unsigned cp) {
  if (cp < 0x80) { dst[0] = (char)cp; return 1; }
  if (cp < 0x800) { dst[0] = (char)(0xC0 | (cp >> 6)); dst[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    dst[0] = (char)(0xE0 | (cp >> 12)); dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); dst[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  dst[0] = (char)(0xF0 | (cp >> 18)); dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); dst[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Parses the string literal at *p (which points at '"'). With out != NULL, writes the unescaped value
 * (the caller sized it: unescaped is never longer than escaped). Returns the position after the closing
 * quote, or NULL if malformed. */
static const char *parse_string(const char *p, char *out, size_t *out_len) {
  size_t n = 0;
  if (*p++ != '"') return NULL;
  while (*p != '"') {
    unsigned char c = (unsigned char)*p;
    if (c == '\0' || c < 0x20) return NULL;
    if (c != '\\') {
      if (out) out[n] = (char)c;
      n++;
      p++;
      continue;
    }
    p++;
    char e = *p++;
    char single = 0;
    switch (e) {
      case '"': single = '"'; break;
      case '\\': single = '\\'; break;
      case '/': single = '/'; break;
      case 'b': single = '\b'; break;
      case 'f': single = '\f'; break;
      case 'n': single = '\n'; break;
      case 'r': single = '\r'; break;
      case 't': single = '\t'; break;
      case 'u': {
        unsigned cp;
        if (hex4(p, &cp)) return NULL;
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && p[0] == '\\' && p[1] == 'u') {
          unsigned lo;
          if (hex4(p + 2, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
          }
        }
        char buf[4];
        size_t k = put_utf8(buf, cp);
        if (out) memcpy(out + n, buf, k);
        n += k;
        continue;
      }
      default: return NULL;
    }
    if (out) out[n] = single;
    n++;
  }
  if (out_len) *out_len = n;
  return p + 1;
}

/* Skips any JSON value (nested objects and arrays included); NULL if malformed. */
static const char *skip_value(const char *p, int depth) {
  p = skip_ws(p);
  if (depth > 32) return NULL;
  if (*p == '"') return parse_string(p, NULL, NULL);
  if (*p == '{' || *p == '[') {
    char close = *p == '{' ? '}' : ']';
    p = skip_ws(p + 1);
    if (*p == close) return p + 1;
    for (;;) {
      if (close == '}') {
        if (*p != '"' || !(p = parse_string(p, NULL, NULL))) return NULL;
        p = skip_ws(p);
        if (*p++ != ':') return NULL;
      }
      if (!(p = skip_value(p, depth + 1))) return NULL;
      p = skip_ws(p);
      if (*p == ',') { p = skip_ws(p + 1); continue; }
      if (*p == close) return p + 1;
      return NULL;
    }
  }
  /* number, true, false, null */
  const char *start = p;
  while (*p && strchr("+-.0123456789eEtruefalsn", *p)) p++;
  return p == start ? NULL : p;
}

char *fg_json_get_string(const char *json, const char *key) {
  if (!json || !key) return NULL;
  const char *p = skip_ws(json);
  if (*p++ != '{') return NULL;
  p = skip_ws(p);
  if (*p == '}') return NULL;
  size_t key_len = strlen(key);
  for (;;) {
    if (*p != '"') return NULL;
    const char *name_start = p;
    size_t name_len;
    const char *after = parse_string(p, NULL, &name_len);
    if (!after) return NULL;
    char *name = malloc(name_len + 1);
    if (!name) return NULL;
    parse_string(name_start, name, NULL);
    name[name_len] = '\0';
    int match = name_len == key_len && memcmp(name, key, key_len) == 0;
    free(name);
    p = skip_ws(after);
    if (*p++ != ':') return NULL;
    p = skip_ws(p);
    if (match && *p == '"') {
      size_t len;
      if (!parse_string(p, NULL, &len)) return NULL;
      char *value = malloc(len + 1);
      if (!value) return NULL;
      parse_string(p, value, NULL);
      value[len] = '\0';
      return value;
    }
    if (match) return NULL; /* present but not a string */
    if (!(p = skip_value(p, 1))) return NULL;
    p = skip_ws(p);
    if (*p == ',') { p = skip_ws(p + 1); continue; }
    return NULL; /* '}' (not found) or malformed */
  }
}

char *fg_json_quote(const char *text) {
  size_t n = strlen(text);
  char *out = malloc(n * 6 + 3);
  if (!out) return NULL;
  char *o = out;
  *o++ = '"';
  for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
    switch (*p) {
      case '"': *o++ = '\\'; *o++ = '"'; break;
      case '\\': *o++ = '\\'; *o++ = '\\'; break;
      case '\n': *o++ = '\\'; *o++ = 'n'; break;
      case '\r': *o++ = '\\'; *o++ = 'r'; break;
      case '\t': *o++ = '\\'; *o++ = 't'; break;
      default:
        if (*p < 0x20) {
          static const char hex[] = "0123456789abcdef";
          *o++ = '\\'; *o++ = 'u'; *o++ = '0'; *o++ = '0';
          *o++ = hex[*p >> 4]; *o++ = hex[*p & 0xF];
        } else {
          *o++ = (char)*p;
        }
    }
  }
  *o++ = '"';
  *o = '\0';
  return out;
}
