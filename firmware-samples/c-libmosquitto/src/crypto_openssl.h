/* Device crypto: P-256 key, CSR, certificate dates, randomness. OpenSSL 3 here; on an MCU: mbedTLS / PSA
 * Crypto (or a secure element that keeps the key and only signs the CSR). All PEM in and out. */
#ifndef FG_CRYPTO_H
#define FG_CRYPTO_H

#include <stdint.h>

/* A fresh ECDSA P-256 private key as PKCS#8 PEM (malloc'd) or NULL. */
char *fg_crypto_generate_key_pem(void);

/* A PKCS#10 CSR (PEM, malloc'd) with subject CN=common_name, signed with key_pem (SHA-256), or NULL. */
char *fg_crypto_make_csr_pem(const char *key_pem, const char *common_name);

/* notBefore/notAfter (epoch seconds) and the serial number (hex) of the first certificate in cert_pem. */
int fg_crypto_cert_info(const char *cert_pem, int64_t *not_before, int64_t *not_after, char serial_hex[80]);

/* Uniform random in [0, bound] from the crypto RNG (bound >= 0). */
uint64_t fg_crypto_random_upto(uint64_t bound);

/* The last crypto library error, for logs. */
const char *fg_crypto_last_error(void);

#endif
