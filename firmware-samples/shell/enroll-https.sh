#!/usr/bin/env bash
# Enrolls a device over HTTPS: POST /v1/enroll with the claim certificate as TLS client certificate.
# Writes DIR/device.key (P-256, 0600, made here and never sent), DIR/device.crt (certificate + chain)
# and DIR/ca.crt. Exit status 0 on success; on refusal prints the API's code and message and exits 1.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

parse_enroll_args "$@"
need openssl
need curl
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

ensure_device_key
# The server decides the subject and extensions; CN = serial is what EST needs and what it checks.
openssl req -new -key "$OUT/device.key" -subj "/CN=$SERIAL" -out "$WORK/device.csr" || die "openssl could not make the CSR"

# {"csr": "<PEM>", "serial": "<serial>"}: the serial was validated above, so it needs no escaping.
{
  printf '{"csr":'
  json_string "$WORK/device.csr"
  printf ',"serial":"%s"}' "$SERIAL"
} >"$WORK/request.json"

status="$(api_call "$WORK/response.json" --cert "$CLAIM_CERT" --key "$CLAIM_KEY" \
  -H 'content-type: application/json' --data-binary "@$WORK/request.json" "$API/v1/enroll")"
[ "$status" = 201 ] || refusal "$status" "$WORK/response.json"

certificate="$(json_field certificate "$WORK/response.json")"
chain="$(json_field chain "$WORK/response.json")"
device_id="$(json_field deviceId "$WORK/response.json")"
not_after="$(json_field notAfter "$WORK/response.json")"
case "$certificate" in *'BEGIN CERTIFICATE'*) ;; *) die "the API answered 201 without a certificate: $(head -c 300 "$WORK/response.json")" ;; esac
printf '%s\n%s\n' "$certificate" "$chain" | sed '/^$/d' >"$WORK/device.crt"
# The certificate must be for our key: compare the public keys.
[ "$(openssl x509 -in "$WORK/device.crt" -noout -pubkey)" = "$(openssl pkey -in "$OUT/device.key" -pubout)" ] ||
  die "the issued certificate does not match $OUT/device.key"
mv "$WORK/device.crt" "$OUT/device.crt"
cp "$CA" "$OUT/ca.crt"

printf 'Enrolled %s over HTTPS (certificate valid until %s)\n' "${device_id:-$SERIAL}" "${not_after:-?}"
printf '  key          %s (0600)\n  certificate  %s\n  CA           %s\n' "$OUT/device.key" "$OUT/device.crt" "$OUT/ca.crt"
