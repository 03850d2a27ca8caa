/* What the device keeps from a trust bundle (README "The trust bundle"), with OpenSSL 3. On an MCU:
 * mbedtls_x509_crt_parse, mbedtls_pk_verify and the basic constraints / key usage fields of mbedtls_x509_crt. */
#ifndef FG_TRUST_H
#define FG_TRUST_H

#include <stddef.h>

/* From the roots the device trusts (trusted_pem) and a bundle (bundle, bundle_len bytes of PEM), the roots to
 * trust from now on:
 *   (a) every trusted root the bundle still lists, and
 *   (b) each new self-signed root (CA, path length absent or >= 1, keyCertSign, valid now) that the same
 *       bundle vouches for with a cross-certificate: the new root's subject and public key, issued by and
 *       verifying under a trusted root (self-issued, path length absent or >= 1, keyCertSign: never an
 *       issuing CA the CA file also lists), a CA with path length absent or >= 1, keyCertSign, valid now.
 * If nothing is kept, the trusted roots are the answer. *roots_pem (malloc'd) gets the answer as PEM and
 * *count its size. Returns 1 when it differs from trusted_pem, 0 when it does not, -1 on error. */
int fg_trust_update(const char *trusted_pem, const char *bundle, size_t bundle_len, char **roots_pem, int *count);

#endif
