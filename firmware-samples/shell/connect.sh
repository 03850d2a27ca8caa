#!/usr/bin/env bash
# Talks MQTT 3.1.1 as an enrolled device with mosquitto_pub / mosquitto_sub over mutual TLS.
#
#   connect.sh --host HOST [--port 8883] --dir DIR --serial SERIAL [publish|listen|run|rotate] [options]
#
#   publish  one telemetry message on devices/SERIAL/telemetry (--message, default a small JSON document)
#   listen   print commands arriving on devices/SERIAL/commands/# as "topic payload" lines
#            (--count N: exit after N, --timeout S: give up after S seconds without one)
#   run      publish, then listen (the default)
#   rotate   wait on $fleetgate/certs/SERIAL/rotate and renew over HTTPS (renew-https.sh, needs --api URL)
#            each time a rotation campaign asks (--count N: exit after N renewals, --timeout S as above)
#
# DIR holds device.crt, device.key and ca.crt as written by enroll-https.sh or enroll-est.sh. The client id
# must be the serial. Publisher and subscriber are separate processes with that one client id, so they run
# one after the other, and both keep a persistent session (-c): commands sent while the device was only
# publishing, or offline, wait for it at QoS 1.
set -euo pipefail

die() {
  printf '%s: error: %s\n' "${0##*/}" "$*" >&2
  exit 1
}
usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

HOST='' PORT=8883 DIR='' SERIAL='' MODE=run MESSAGE='' COUNT='' TIMEOUT='' API=''
while [ $# -gt 0 ]; do
  case "$1" in
    --host) HOST="${2-}"; shift 2 || usage ;;
    --port) PORT="${2-}"; shift 2 || usage ;;
    --dir) DIR="${2-}"; shift 2 || usage ;;
    --serial) SERIAL="${2-}"; shift 2 || usage ;;
    --message) MESSAGE="${2-}"; shift 2 || usage ;;
    --count) COUNT="${2-}"; shift 2 || usage ;;
    --timeout) TIMEOUT="${2-}"; shift 2 || usage ;;
    --api) API="${2-}"; shift 2 || usage ;;
    publish | listen | run | rotate) MODE="$1"; shift ;;
    -h | --help) usage ;;
    *) printf '%s: unknown argument: %s\n' "${0##*/}" "$1" >&2; usage ;;
  esac
done
[ -n "$HOST" ] && [ -n "$DIR" ] && [ -n "$SERIAL" ] || usage
for file in device.crt device.key ca.crt; do
  [ -r "$DIR/$file" ] || die "cannot read $DIR/$file (run enroll-https.sh or enroll-est.sh first)"
done
for tool in mosquitto_pub mosquitto_sub; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is required (Debian: apt-get install mosquitto-clients)"
done

# The broker checks the certificate's CN against the client id; --cafile verifies the gateway.
common=(-h "$HOST" -p "$PORT" -V mqttv311 -i "$SERIAL" -c -q 1
  --cafile "$DIR/ca.crt" --cert "$DIR/device.crt" --key "$DIR/device.key")

publish() {
  local payload="$MESSAGE"
  [ -n "$payload" ] || payload="{\"ts\":$(date +%s),\"uptime\":$(cut -d' ' -f1 /proc/uptime 2>/dev/null || echo 0)}"
  mosquitto_pub "${common[@]}" -t "devices/$SERIAL/telemetry" -m "$payload" ||
    die "mosquitto_pub failed (exit $?): the gateway refused the connection or the publish (see its audit log)"
  printf 'published telemetry on devices/%s/telemetry\n' "$SERIAL" >&2
}

listen() {
  local extra=()
  [ -z "$COUNT" ] || extra+=(-C "$COUNT")
  [ -z "$TIMEOUT" ] || extra+=(-W "$TIMEOUT")
  printf 'listening on devices/%s/commands/#\n' "$SERIAL" >&2
  mosquitto_sub "${common[@]}" -t "devices/$SERIAL/commands/#" -v "${extra[@]}" ||
    die "mosquitto_sub ended with exit $? (refused, disconnected or timed out)"
}

# A rotation campaign's command (README "Rotation campaigns"): renew now. A clean session subscribes anew on
# every connection, which is when the gateway delivers a command that waited while the device was offline.
rotate() {
  [ -n "$API" ] || die "rotate needs --api https://HOST:8443 (renewal goes over POST /v1/renew)"
  local renewed=0 extra=()
  [ -z "$TIMEOUT" ] || extra+=(-W "$TIMEOUT")
  while [ -z "$COUNT" ] || [ "$renewed" -lt "$COUNT" ]; do
    printf 'waiting for a rotate command on $fleetgate/certs/%s/rotate\n' "$SERIAL" >&2
    # Clean session (no -c), and read afresh each time: after a renewal the next connection uses the new certificate.
    command_json="$(mosquitto_sub -h "$HOST" -p "$PORT" -V mqttv311 -i "$SERIAL" -q 1 \
      --cafile "$DIR/ca.crt" --cert "$DIR/device.crt" --key "$DIR/device.key" \
      -t "\$fleetgate/certs/$SERIAL/rotate" -C 1 "${extra[@]}")" ||
      die "mosquitto_sub ended with exit $? (refused, disconnected or timed out)"
    printf 'rotate command: %s\n' "$command_json" >&2
    "$(dirname "$0")/renew-https.sh" --api "$API" --dir "$DIR" --serial "$SERIAL"
    renewed=$((renewed + 1))
  done
}

case "$MODE" in
  publish) publish ;;
  listen) listen ;;
  run) publish && listen ;;
  rotate) rotate ;;
esac
