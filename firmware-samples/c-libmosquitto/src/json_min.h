/* Just enough JSON for the enrollment protocol: read top-level string fields of a reply, and escape a string
 * (the CSR PEM) for a request. No allocation beyond the returned strings; portable as is. */
#ifndef FG_JSON_MIN_H
#define FG_JSON_MIN_H

#include <stddef.h>

/* The unescaped value of the top-level string field `key` of the object `json` (malloc'd, NUL-terminated),
 * or NULL when the document is not an object, the field is missing or is not a string. */
char *fg_json_get_string(const char *json, const char *key);

/* `text` as a JSON string literal with the quotes, malloc'd. */
char *fg_json_quote(const char *text);

#endif
