#!/usr/bin/env bash
# Follows the trust bundle (README "The trust bundle"): reads the bundle from GET /v1/pki/trust-bundle over
# HTTPS, verified with the device's current DIR/ca.crt (or from a file with --bundle, e.g. a message saved
# from `mosquitto_sub -t '$fleetgate/trust/bundle'`), and keeps every root of DIR/ca.crt the bundle still
# lists plus each new self-signed root the bundle cross-signs with a root DIR/ca.crt already holds. When that
# changes the roots, DIR/ca.crt is replaced (temporary file, then rename); connect.sh and renew-https.sh use
# it from then on. A bundle that vouches for none of the device's roots changes nothing. Run it from cron
# (daily is plenty) and before a root is retired. Exit status 0 (changed or not); 1 on a transport error.
#
#   trust-update.sh --api https://HOST:8443 --dir DIR
#   trust-update.sh --bundle BUNDLE.pem --dir DIR
set -eu

die() {
  printf '%s: error: %s\n' "${0##*/}" "$*" >&2
  exit 1
}
usage() {
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

API='' DIR='' BUNDLE=''
while [ $# -gt 0 ]; do
  case "$1" in
    --api) API="${2-}"; shift 2 || usage ;;
    --dir) DIR="${2-}"; shift 2 || usage ;;
    --bundle) BUNDLE="${2-}"; shift 2 || usage ;;
    -h | --help) usage ;;
    *) printf '%s: unknown argument: %s\n' "${0##*/}" "$1" >&2; usage ;;
  esac
done
[ -n "$DIR" ] && { [ -n "$API" ] || [ -n "$BUNDLE" ]; } || usage
[ -r "$DIR/ca.crt" ] || die "cannot read $DIR/ca.crt (enroll first)"
command -v openssl >/dev/null 2>&1 || die "'openssl' is required but not installed"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# Only the roots given in -CAfile: never the system's trust store.
NO_STORE='-no-CApath'
case "$(openssl version)" in OpenSSL\ 1.*) ;; *) NO_STORE='-no-CApath -no-CAstore' ;; esac

if [ -n "$BUNDLE" ]; then
  cp "$BUNDLE" "$WORK/bundle.pem" || die "cannot read $BUNDLE"
else
  command -v curl >/dev/null 2>&1 || die "'curl' is required but not installed"
  API="${API%/}"
  case "$API" in https://*) ;; *) die "--api must be an https:// URL (got '$API')" ;; esac
  status="$(curl -sS --cacert "$DIR/ca.crt" -o "$WORK/bundle.pem" -w '%{http_code}' "$API/v1/pki/trust-bundle" 2>"$WORK/curl.err")" ||
    die "could not reach the API at $API: $(tr '\n' ' ' <"$WORK/curl.err")"
  [ "$status" = 200 ] || die "GET /v1/pki/trust-bundle answered HTTP $status"
fi

# Splits a PEM text ($1) into $2-001.pem, $2-002.pem...; a block openssl cannot read is dropped.
split_pem() {
  awk -v out="$2" '
    /-----BEGIN CERTIFICATE-----/ { n++; file = sprintf("%s-%03d.pem", out, n); inside = 1 }
    inside { print > file }
    /-----END CERTIFICATE-----/ { if (inside) close(file); inside = 0 }' "$1"
  for file in "$2"-*.pem; do
    [ -e "$file" ] || continue
    openssl x509 -in "$file" -noout 2>/dev/null || rm -f "$file"
  done
}

field() { openssl x509 -in "$2" -noout "-$1" -nameopt RFC2253 | sed 's/^[a-z]*=//'; }
fingerprint() { openssl x509 -in "$1" -noout -fingerprint -sha256; }
public_key() { openssl x509 -in "$1" -noout -pubkey; }

# basicConstraints CA with no path length or one of at least 1 (RFC 5280 §4.2.1.9), keyUsage keyCertSign.
signs_cas() {
  extensions="$(openssl x509 -in "$1" -noout -ext basicConstraints,keyUsage 2>/dev/null)" || return 1
  printf '%s\n' "$extensions" | grep -q 'CA:TRUE' || return 1
  printf '%s\n' "$extensions" | grep -q 'Certificate Sign' || return 1
  pathlen="$(printf '%s\n' "$extensions" | sed -n 's/.*pathlen:\([0-9]*\).*/\1/p')"
  [ -z "$pathlen" ] || [ "$pathlen" -ge 1 ]
}

# openssl verify checks the validity period of every certificate on the path and each signature.
# $1 = the trusted roots, $2 = the certificate; -check_ss_sig also checks a self-signed one's signature.
# shellcheck disable=SC2086
verifies_under() { openssl verify $NO_STORE -check_ss_sig -partial_chain -CAfile "$1" "$2" >/dev/null 2>&1; }

# A new root: self-signed (subject = issuer, signature checked under its own key), signs CAs, valid now.
is_root() {
  [ "$(field subject "$1")" = "$(field issuer "$1")" ] && signs_cas "$1" && verifies_under "$1" "$1"
}

# The rule: prints the files of the roots to keep, one a line (nothing when the bundle vouches for none).
roots_to_keep() {
  for root in "$WORK"/offered-*.pem; do
    [ -e "$root" ] || continue
    if grep -qxF "$(fingerprint "$root")" "$WORK/known.fingerprints"; then
      printf '%s\n' "$root"
      continue
    fi
    is_root "$root" || continue
    for cross in "$WORK"/offered-*.pem; do
      [ "$cross" != "$root" ] || continue
      [ "$(field subject "$cross")" = "$(field subject "$root")" ] || continue
      [ "$(public_key "$cross")" = "$(public_key "$root")" ] || continue
      signs_cas "$cross" || continue
      [ "$(field subject "$cross")" != "$(field issuer "$cross")" ] || continue
      if signed_by_known_root "$cross"; then
        printf '%s\n' "$root"
        break
      fi
    done
  done
}

# Issued by a root the device already trusts: a self-issued CA of DIR/ca.crt allowed to sign CAs (never an
# issuing CA that a CA file holding a chain would also list), under which openssl verify accepts the
# certificate (signature, and both validity periods).
signed_by_known_root() {
  for signer in "$WORK"/known-*.pem; do
    [ -e "$signer" ] || continue
    [ "$(field subject "$signer")" = "$(field issuer "$1")" ] || continue
    [ "$(field subject "$signer")" = "$(field issuer "$signer")" ] && signs_cas "$signer" || continue
    verifies_under "$signer" "$1" && return 0
  done
  return 1
}

split_pem "$DIR/ca.crt" "$WORK/known"
split_pem "$WORK/bundle.pem" "$WORK/offered"
: >"$WORK/known.fingerprints"
for file in "$WORK"/known-*.pem; do
  [ -e "$file" ] && fingerprint "$file" >>"$WORK/known.fingerprints"
done
roots_to_keep >"$WORK/keep"
if [ ! -s "$WORK/keep" ]; then
  printf 'trust bundle vouches for none of the roots in %s: unchanged\n' "$DIR/ca.crt" >&2
  exit 0
fi
: >"$WORK/kept.fingerprints"
: >"$WORK/ca.crt"
while IFS= read -r file; do
  fingerprint "$file" >>"$WORK/kept.fingerprints"
  cat "$file" >>"$WORK/ca.crt"
done <"$WORK/keep"
if cmp -s "$WORK/kept.fingerprints" "$WORK/known.fingerprints"; then
  printf 'trust bundle: %s unchanged\n' "$DIR/ca.crt" >&2
  exit 0
fi
cp "$WORK/ca.crt" "$DIR/ca.crt.tmp"
mv "$DIR/ca.crt.tmp" "$DIR/ca.crt"
printf 'trust bundle: now trusting %s root(s), stored in %s\n' "$(wc -l <"$WORK/keep" | tr -d ' ')" "$DIR/ca.crt"
