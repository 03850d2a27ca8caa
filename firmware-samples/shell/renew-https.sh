#!/usr/bin/env bash
# Renews a device's certificate over HTTPS: POST /v1/renew with the current device certificate as TLS
# client certificate and a CSR for a new key made here. On success DIR/device.key and DIR/device.crt are
# replaced (the new pair is written next to them first, then renamed over them, so an interrupted renewal
# leaves the old pair working). The gateway retires the old certificate when the device first connects with
# the new one. Exit status 0 on success; on refusal prints the API's code and message and exits 1.
#
#   renew-https.sh --api https://HOST:8443 --dir DIR --serial SERIAL
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage_renew() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

API='' DIR='' SERIAL=''
while [ $# -gt 0 ]; do
  case "$1" in
    --api) API="${2-}"; shift 2 || usage_renew ;;
    --dir) DIR="${2-}"; shift 2 || usage_renew ;;
    --serial) SERIAL="${2-}"; shift 2 || usage_renew ;;
    -h | --help) usage_renew ;;
    *) printf '%s: unknown argument: %s\n' "${0##*/}" "$1" >&2; usage_renew ;;
  esac
done
[ -n "$API" ] && [ -n "$DIR" ] && [ -n "$SERIAL" ] || usage_renew
API="${API%/}"
case "$API" in https://*) ;; *) die "--api must be an https:// URL (got '$API')" ;; esac
printf '%s' "$SERIAL" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$' || die "serial '$SERIAL' is not a valid device id"
for file in device.crt device.key ca.crt; do
  [ -r "$DIR/$file" ] || die "cannot read $DIR/$file (enroll first)"
done
need openssl
need curl
CA="$DIR/ca.crt"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# A new key for each renewal: renewal is also key rotation. It stays on the device.
(umask 077 && openssl ecparam -name prime256v1 -genkey -noout -out "$DIR/renew.key") || die "openssl could not generate a P-256 key"
chmod 600 "$DIR/renew.key"
openssl req -new -key "$DIR/renew.key" -subj "/CN=$SERIAL" -out "$WORK/renew.csr" || die "openssl could not make the CSR"
{
  printf '{"csr":'
  json_string "$WORK/renew.csr"
  printf '}'
} >"$WORK/request.json"

status="$(api_call "$WORK/response.json" --cert "$DIR/device.crt" --key "$DIR/device.key" \
  -H 'content-type: application/json' --data-binary "@$WORK/request.json" "$API/v1/renew")"
if [ "$status" != 201 ]; then
  rm -f "$DIR/renew.key"
  code="$(json_field code "$WORK/response.json")"
  die "renewal refused (HTTP $status): ${code:-?}: $(json_field message "$WORK/response.json")"
fi

certificate="$(json_field certificate "$WORK/response.json")"
chain="$(json_field chain "$WORK/response.json")"
not_after="$(json_field notAfter "$WORK/response.json")"
printf '%s\n%s\n' "$certificate" "$chain" | sed '/^$/d' >"$WORK/device.crt"
[ "$(openssl x509 -in "$WORK/device.crt" -noout -pubkey)" = "$(openssl pkey -in "$DIR/renew.key" -pubout)" ] ||
  die "the issued certificate does not match the new key"
# Key first, then certificate: each rename is atomic.
mv "$DIR/renew.key" "$DIR/device.key"
mv "$WORK/device.crt" "$DIR/device.crt"
printf 'Renewed %s over HTTPS (certificate valid until %s)\n' "$SERIAL" "${not_after:-?}"
