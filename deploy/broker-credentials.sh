#!/bin/sh
# One-shot job of docker-compose.yml: gives each broker exactly what it needs and nothing more.
# A broker terminates TLS and relays enrollment; it never holds a CA key or the admin token. Into each
# broker's own volume go the CA certificates it verifies devices with, the server certificate and key it
# answers with, and a token of role broker made for it alone (revocable: `fleetgate token revoke broker-a`).
# Runs with the provisioning data volume mounted read-only at /data (for the admin token and pki/*.crt);
# FLEETGATE_DATA_DIR and BROKERS_DIR move both for a run outside Docker.
set -eu
api=${FLEETGATE_API:-https://provisioning:8443}
data=${FLEETGATE_DATA_DIR:-/data}
brokers=${BROKERS_DIR:-/brokers}
for broker in "$@"; do
  out="$brokers/$broker"
  mkdir -p "$out/pki"
  for file in ca.crt device-ca.crt claim-ca.crt server.crt; do cp "$data/pki/$file" "$out/pki/$file"; done
  (umask 077 && cp "$data/pki/server.key" "$out/pki/server.key")
  if [ ! -s "$out/broker.token" ]; then
    # --json: {"name", "role", "token", "createdAt"}; the token is shown once and written 0600.
    node bin/fleetgate.js token create --name "$broker" --role broker --json --api "$api" --data-dir "$data" \
      | node -e 'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>process.stdout.write(JSON.parse(s).token))' \
      | (umask 077 && cat > "$out/broker.token.tmp")
    # sh has no pipefail: an empty file means `token create` failed (it printed why).
    [ -s "$out/broker.token.tmp" ] || { echo "could not create the broker token of $broker" >&2; exit 1; }
    mv "$out/broker.token.tmp" "$out/broker.token"
  fi
done
