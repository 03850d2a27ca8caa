#!/usr/bin/env bash
# Enrolls a device over EST (RFC 7030): GET /.well-known/est/cacerts, then POST simpleenroll with a base64
# DER PKCS#10 body (Content-Type application/pkcs10), authenticated by the claim certificate. The serial
# travels as the CSR's CN (EST has no other field for it). The answer is a base64 certs-only PKCS#7.
# Writes DIR/device.key (0600), DIR/device.crt (certificate + issuing CA) and DIR/ca.crt.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

parse_enroll_args "$@"
need openssl
need curl
need base64
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# 1. The CA certificates, to complete the device's chain.
status="$(api_call "$WORK/cacerts.b64" "$API/.well-known/est/cacerts")"
[ "$status" = 200 ] || refusal "$status" "$WORK/cacerts.b64"
base64 -d <"$WORK/cacerts.b64" >"$WORK/cacerts.der" 2>/dev/null || die "cacerts: the answer is not base64"
openssl pkcs7 -inform DER -in "$WORK/cacerts.der" -print_certs -out "$WORK/cacerts.pem" 2>/dev/null || die "cacerts: the answer is not a PKCS#7"

# 2. Key and CSR, base64 DER (folded at 76 characters; EST accepts one line too).
ensure_device_key
openssl req -new -key "$OUT/device.key" -subj "/CN=$SERIAL" -outform DER -out "$WORK/device.csr.der" || die "openssl could not make the CSR"
base64 <"$WORK/device.csr.der" >"$WORK/device.csr.b64"

# 3. simpleenroll.
status="$(api_call "$WORK/response.b64" --cert "$CLAIM_CERT" --key "$CLAIM_KEY" \
  -H 'content-type: application/pkcs10' --data-binary "@$WORK/device.csr.b64" "$API/.well-known/est/simpleenroll")"
[ "$status" = 200 ] || refusal "$status" "$WORK/response.b64"
base64 -d <"$WORK/response.b64" >"$WORK/response.der" 2>/dev/null || die "simpleenroll: the answer is not base64"
openssl pkcs7 -inform DER -in "$WORK/response.der" -print_certs -out "$WORK/issued.pem" 2>/dev/null || die "simpleenroll: the answer is not a PKCS#7"
openssl x509 -in "$WORK/issued.pem" -out "$WORK/leaf.pem" || die "simpleenroll: no certificate in the answer"
[ "$(openssl x509 -in "$WORK/leaf.pem" -noout -pubkey)" = "$(openssl pkey -in "$OUT/device.key" -pubout)" ] ||
  die "the issued certificate does not match $OUT/device.key"

# 4. device.crt = leaf + its issuing CA from cacerts (the CA whose subject is the leaf's issuer).
issuer="$(openssl x509 -in "$WORK/leaf.pem" -noout -issuer -nameopt RFC2253 | sed 's/^issuer=//')"
awk -v dir="$WORK" '/-----BEGIN CERTIFICATE-----/ { n++ } n { print > (dir "/ca-" n ".pem") }' "$WORK/cacerts.pem"
cp "$WORK/leaf.pem" "$WORK/device.crt"
for ca in "$WORK"/ca-*.pem; do
  [ -e "$ca" ] || break
  if [ "$(openssl x509 -in "$ca" -noout -subject -nameopt RFC2253 | sed 's/^subject=//')" = "$issuer" ]; then
    openssl x509 -in "$ca" >>"$WORK/device.crt"
  fi
done
mv "$WORK/device.crt" "$OUT/device.crt"
cp "$CA" "$OUT/ca.crt"

not_after="$(openssl x509 -in "$WORK/leaf.pem" -noout -enddate | sed 's/^notAfter=//')"
printf 'Enrolled %s over EST (certificate valid until %s)\n' "$SERIAL" "$not_after"
printf '  key          %s (0600)\n  certificate  %s\n  CA           %s\n' "$OUT/device.key" "$OUT/device.crt" "$OUT/ca.crt"
