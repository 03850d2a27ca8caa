/* The trust bundle rule of README "The trust bundle" (core/pki/trust-bundle-update.ts), with OpenSSL 3.
 * A bundle is never trusted for what it says about itself: a new root counts only when a root the device
 * already trusts cross-signs it in the same bundle. An issuing CA (path length 0) never counts as a
 * cross-certificate: otherwise whoever stole a device CA's key could self-sign that CA as a "root". */
#include "trust_openssl.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

/* Every certificate in a PEM text, in order; stops at the first block that does not parse. */
static STACK_OF(X509) *load_certificates(const char *pem, size_t len) {
  STACK_OF(X509) *certificates = sk_X509_new_null();
  BIO *in = BIO_new_mem_buf(pem, (int)len);
  if (!certificates || !in) {
    BIO_free(in);
    sk_X509_pop_free(certificates, X509_free);
    return NULL;
  }
  X509 *certificate;
  while ((certificate = PEM_read_bio_X509(in, NULL, NULL, NULL)) != NULL)
    if (!sk_X509_push(certificates, certificate)) X509_free(certificate);
  ERR_clear_error(); /* the end of the text (or a bad block) */
  BIO_free(in);
  return certificates;
}

static int valid_now(const X509 *certificate) {
  /* X509_cmp_time: -1 when the time is before now, 1 after, 0 on error (which counts as not valid). */
  return X509_cmp_time(X509_get0_notBefore(certificate), NULL) < 0 && X509_cmp_time(X509_get0_notAfter(certificate), NULL) > 0;
}

/* basicConstraints CA with no path length or one of at least 1 (RFC 5280 §4.2.1.9), keyUsage with
 * keyCertSign (§4.2.1.3). A duplicated extension makes X509_get_ext_d2i return NULL: refused. */
static int signs_cas(X509 *certificate) {
  int critical;
  BASIC_CONSTRAINTS *constraints = X509_get_ext_d2i(certificate, NID_basic_constraints, &critical, NULL);
  int ok = constraints && constraints->ca && (!constraints->pathlen || ASN1_INTEGER_get(constraints->pathlen) >= 1);
  BASIC_CONSTRAINTS_free(constraints);
  /* X509_get_key_usage answers "everything" when the extension is absent: it must be there. */
  return ok && (X509_get_extension_flags(certificate) & EXFLAG_KUSAGE) && (X509_get_key_usage(certificate) & KU_KEY_CERT_SIGN);
}

static int signed_by(X509 *certificate, X509 *issuer) {
  EVP_PKEY *key = X509_get0_pubkey(issuer);
  int ok = key && X509_verify(certificate, key) == 1;
  ERR_clear_error();
  return ok;
}

static int is_root(X509 *certificate) {
  return X509_NAME_cmp(X509_get_subject_name(certificate), X509_get_issuer_name(certificate)) == 0 && signs_cas(certificate) &&
         valid_now(certificate) && signed_by(certificate, certificate);
}

static int same_subject_and_key(X509 *a, X509 *b) {
  EVP_PKEY *ka = X509_get0_pubkey(a), *kb = X509_get0_pubkey(b);
  return X509_NAME_cmp(X509_get_subject_name(a), X509_get_subject_name(b)) == 0 && ka && kb && EVP_PKEY_eq(ka, kb) == 1;
}

static int listed(STACK_OF(X509) *certificates, X509 *certificate) {
  for (int i = 0; i < sk_X509_num(certificates); i++)
    if (X509_cmp(sk_X509_value(certificates, i), certificate) == 0) return 1;
  return 0;
}

/* Some root in `known` issued `cross`: names and key identifiers match (X509_check_issued) and the
 * signature verifies under its key. The signer must be a root (self-issued, allowed to sign CAs), not an
 * issuing CA that a CA file holding a chain would also list: its stolen key must not vouch for a root. */
static int cross_signed_by_known(STACK_OF(X509) *known, X509 *cross) {
  for (int i = 0; i < sk_X509_num(known); i++) {
    X509 *signer = sk_X509_value(known, i);
    int root = X509_NAME_cmp(X509_get_subject_name(signer), X509_get_issuer_name(signer)) == 0 && signs_cas(signer);
    if (root && X509_check_issued(signer, cross) == X509_V_OK && signed_by(cross, signer)) return 1;
  }
  return 0;
}

static char *to_pem(STACK_OF(X509) *certificates) {
  BIO *out = BIO_new(BIO_s_mem());
  if (!out) return NULL;
  for (int i = 0; i < sk_X509_num(certificates); i++)
    if (!PEM_write_bio_X509(out, sk_X509_value(certificates, i))) {
      BIO_free(out);
      return NULL;
    }
  char *data;
  long len = BIO_get_mem_data(out, &data);
  char *text = malloc((size_t)len + 1);
  if (text) {
    memcpy(text, data, (size_t)len);
    text[len] = '\0';
  }
  BIO_free(out);
  return text;
}

int fg_trust_update(const char *trusted_pem, const char *bundle, size_t bundle_len, char **roots_pem, int *count) {
  *roots_pem = NULL;
  *count = 0;
  STACK_OF(X509) *known = load_certificates(trusted_pem, strlen(trusted_pem));
  STACK_OF(X509) *offered = load_certificates(bundle, bundle_len);
  STACK_OF(X509) *keep = sk_X509_new_null(); /* borrows from `offered` */
  int result = -1;
  if (!known || !offered || !keep) goto done;
  for (int i = 0; i < sk_X509_num(offered); i++) {
    X509 *root = sk_X509_value(offered, i);
    if (listed(known, root)) {
      sk_X509_push(keep, root);
      continue;
    }
    if (!is_root(root)) continue;
    for (int j = 0; j < sk_X509_num(offered); j++) {
      X509 *cross = sk_X509_value(offered, j);
      if (j == i || !same_subject_and_key(cross, root) || !signs_cas(cross) || !valid_now(cross)) continue;
      if (cross_signed_by_known(known, cross)) {
        sk_X509_push(keep, root);
        break;
      }
    }
  }
  STACK_OF(X509) *answer = sk_X509_num(keep) > 0 ? keep : known;
  int changed = sk_X509_num(answer) != sk_X509_num(known);
  for (int i = 0; !changed && i < sk_X509_num(answer); i++) changed = X509_cmp(sk_X509_value(answer, i), sk_X509_value(known, i)) != 0;
  *roots_pem = to_pem(answer);
  *count = sk_X509_num(answer);
  result = *roots_pem ? changed : -1;
done:
  sk_X509_free(keep);
  sk_X509_pop_free(known, X509_free);
  sk_X509_pop_free(offered, X509_free);
  return result;
}
