# Shared by enroll-https.sh and enroll-est.sh: argument parsing, key and CSR, error reporting.
# Needs only a POSIX userland plus bash, openssl and curl (jq is used when present, never required).

die() {
  printf '%s: error: %s\n' "${0##*/}" "$*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed"
}

usage_enroll() {
  cat >&2 <<USAGE
usage: ${0##*/} --api https://HOST:8443 --ca ca.crt --claim-cert claim.crt --claim-key claim.key --serial SERIAL --out DIR

  --api         base URL of the fleetgate API (default port 8443)
  --ca          root CA the API server certificate chains to (ca.crt from 'fleetgate claim create')
  --claim-cert  claim certificate (TLS client certificate for enrollment)
  --claim-key   claim private key
  --serial      device serial; becomes the device id, the certificate CN and the MQTT client id
  --out         directory for device.key (0600, reused if present), device.crt (certificate + chain), ca.crt
USAGE
  exit 2
}

parse_enroll_args() {
  API='' CA='' CLAIM_CERT='' CLAIM_KEY='' SERIAL='' OUT=''
  while [ $# -gt 0 ]; do
    case "$1" in
      --api) API="${2-}"; shift 2 || usage_enroll ;;
      --ca) CA="${2-}"; shift 2 || usage_enroll ;;
      --claim-cert) CLAIM_CERT="${2-}"; shift 2 || usage_enroll ;;
      --claim-key) CLAIM_KEY="${2-}"; shift 2 || usage_enroll ;;
      --serial) SERIAL="${2-}"; shift 2 || usage_enroll ;;
      --out) OUT="${2-}"; shift 2 || usage_enroll ;;
      -h | --help) usage_enroll ;;
      *) printf '%s: unknown argument: %s\n' "${0##*/}" "$1" >&2; usage_enroll ;;
    esac
  done
  for pair in "api:$API" "ca:$CA" "claim-cert:$CLAIM_CERT" "claim-key:$CLAIM_KEY" "serial:$SERIAL" "out:$OUT"; do
    [ -n "${pair#*:}" ] || { printf '%s: missing --%s\n' "${0##*/}" "${pair%%:*}" >&2; usage_enroll; }
  done
  API="${API%/}"
  case "$API" in https://*) ;; *) die "--api must be an https:// URL (got '$API')" ;; esac
  # The same rule the gateway applies to device ids (and it keeps the serial safe inside -subj and JSON).
  printf '%s' "$SERIAL" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$' ||
    die "serial '$SERIAL' is not a valid device id (letters, digits, '.', '_', ':', '-'; up to 128 characters)"
  for file in "$CA" "$CLAIM_CERT" "$CLAIM_KEY"; do
    [ -r "$file" ] || die "cannot read '$file'"
  done
}

# Makes OUT/device.key (P-256, 0600) unless it exists: a device that lost the reply retries with the same
# key and gets the same identity back (enrollment is idempotent per serial and key).
ensure_device_key() {
  mkdir -p "$OUT"
  if [ -s "$OUT/device.key" ]; then
    printf 'Reusing the existing key %s\n' "$OUT/device.key" >&2
    return
  fi
  (umask 077 && openssl ecparam -name prime256v1 -genkey -noout -out "$OUT/device.key.tmp") || die "openssl could not generate a P-256 key"
  chmod 600 "$OUT/device.key.tmp"
  mv "$OUT/device.key.tmp" "$OUT/device.key"
}

# JSON string field from a file ($1 = field, $2 = file), unescaped. jq when available; otherwise a sed
# fallback that handles the escapes fleetgate emits (\" \\ \/ \n \r \t) in a flat object.
json_field() {
  if command -v jq >/dev/null 2>&1 && [ -z "${FLEETGATE_NO_JQ-}" ]; then
    jq -r --arg f "$1" '.[$f] // empty | strings' "$2" 2>/dev/null || true
    return
  fi
  tr -d '\n' <"$2" |
    sed -nE "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"(([^\"\\\\]|\\\\.)*)\".*/\\1/p" |
    awk '{
      out = ""; s = $0
      while ((i = index(s, "\\")) > 0) {
        out = out substr(s, 1, i - 1); c = substr(s, i + 1, 1); s = substr(s, i + 2)
        if (c == "n") out = out "\n"; else if (c == "r") out = out "\r"; else if (c == "t") out = out "\t"
        else out = out c
      }
      printf "%s", out s
    }'
}

# A file's contents as a JSON string literal. jq -Rs when available; otherwise awk escapes \ " and
# control characters (a PEM needs only the newline escape, but nothing is assumed).
json_string() {
  if command -v jq >/dev/null 2>&1 && [ -z "${FLEETGATE_NO_JQ-}" ]; then
    jq -Rs . "$1"
    return
  fi
  awk 'BEGIN { printf "\"" }
    {
      gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\t/, "\\t"); gsub(/\r/, "\\r")
      printf "%s\\n", $0
    }
    END { printf "\"" }' "$1"
}

# Prints the API's {code, message} refusal from $2 (or the raw body) for HTTP status $1, then exits 1.
refusal() {
  status="$1" body="$2"
  code="$(json_field code "$body")"
  message="$(json_field message "$body")"
  if [ -n "$code" ]; then
    die "enrollment refused (HTTP $status): $code: ${message:-no message}"
  fi
  die "enrollment failed (HTTP $status): $(head -c 500 "$body")"
}

# curl wrapper: -o body file, prints the HTTP status; a transport failure (TLS, DNS, refused) is fatal.
# Claim credentials go in only when given, so the same wrapper fetches /cacerts.
api_call() {
  body_out="$1"
  shift
  curl_err="$WORK/curl.err"
  status="$(curl -sS --cacert "$CA" -o "$body_out" -w '%{http_code}' "$@" 2>"$curl_err")" || {
    die "could not reach the API at $API: $(tr '\n' ' ' <"$curl_err")"
  }
  printf '%s' "$status"
}
