#include "crypto_openssl.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "platform.h"

static char *bio_to_string(BIO *bio) {
  char *data;
  long len = BIO_get_mem_data(bio, &data);
  if (len <= 0) return NULL;
  char *out = malloc((size_t)len + 1);
  if (!out) return NULL;
  memcpy(out, data, (size_t)len);
  out[len] = '\0';
  return out;
}

char *fg_crypto_generate_key_pem(void) {
  EVP_PKEY *key = EVP_EC_gen("P-256");
  if (!key) return NULL;
  BIO *bio = BIO_new(BIO_s_mem());
  char *pem = NULL;
  if (bio && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)) pem = bio_to_string(bio);
  BIO_free(bio);
  EVP_PKEY_free(key);
  return pem;
}

static EVP_PKEY *read_key(const char *key_pem) {
  BIO *bio = BIO_new_mem_buf(key_pem, -1);
  EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
  BIO_free(bio);
  return key;
}

char *fg_crypto_make_csr_pem(const char *key_pem, const char *common_name) {
  EVP_PKEY *key = read_key(key_pem);
  X509_REQ *req = X509_REQ_new();
  BIO *bio = BIO_new(BIO_s_mem());
  char *pem = NULL;
  if (key && req && bio && X509_REQ_set_version(req, 0) &&
      X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8, (const unsigned char *)common_name, -1, -1, 0) &&
      X509_REQ_set_pubkey(req, key) && X509_REQ_sign(req, key, EVP_sha256()) > 0 && PEM_write_bio_X509_REQ(bio, req)) {
    pem = bio_to_string(bio);
  }
  BIO_free(bio);
  X509_REQ_free(req);
  EVP_PKEY_free(key);
  return pem;
}

static int asn1_to_epoch(const ASN1_TIME *t, int64_t *out) {
  struct tm tm;
  if (!t || !ASN1_TIME_to_tm(t, &tm)) return -1;
  *out = fg_utc_to_epoch(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return 0;
}

int fg_crypto_cert_info(const char *cert_pem, int64_t *not_before, int64_t *not_after, char serial_hex[80]) {
  BIO *bio = BIO_new_mem_buf(cert_pem, -1);
  X509 *cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
  int rc = -1;
  if (cert && asn1_to_epoch(X509_get0_notBefore(cert), not_before) == 0 && asn1_to_epoch(X509_get0_notAfter(cert), not_after) == 0) {
    rc = 0;
    if (serial_hex) {
      serial_hex[0] = '\0';
      BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
      char *hex = bn ? BN_bn2hex(bn) : NULL;
      if (hex) {
        size_t i = 0;
        for (; hex[i] && i < 79; i++) serial_hex[i] = (char)(hex[i] >= 'A' && hex[i] <= 'F' ? hex[i] + 32 : hex[i]);
        serial_hex[i] = '\0';
      }
      OPENSSL_free(hex);
      BN_free(bn);
    }
  }
  X509_free(cert);
  BIO_free(bio);
  return rc;
}

uint64_t fg_crypto_random_upto(uint64_t bound) {
  uint64_t r = 0;
  if (RAND_bytes((unsigned char *)&r, sizeof r) != 1) r = (uint64_t)fg_monotonic_ms() * 6364136223846793005ULL;
  return bound == UINT64_MAX ? r : r % (bound + 1);
}

const char *fg_crypto_last_error(void) {
  static char buf[256];
  unsigned long e = ERR_get_error();
  if (!e) return "unknown error";
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}
