# fleetgate: one image for every role (serve, provisioning, broker, sim); the command picks the role.
# Build: docker build -t fleetgate .      Run: see docker-compose.yml
# Two stages: `build` has the toolchain, the dev dependencies (TypeScript, tsx, esbuild) and the sources; the
# runtime stage gets only the compiled JavaScript (build/), the console bundle (console/dist) and the
# production node_modules: no compiler, no tsx, no .ts sources.
FROM node:24-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 compiles from source when no prebuilt binary can be fetched.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
# --ignore-scripts: the package's own `prepare` (the build) needs the sources, copied below; the three
# dependencies with install steps are built explicitly (pkcs11js: the PKCS#11 key store, README "CA keys in
# an HSM"; the HSM vendor's module is mounted into the container, it is not part of the image).
# This layer is cached until the lockfile changes.
RUN npm ci --no-audit --no-fund --ignore-scripts && npm rebuild better-sqlite3 esbuild pkcs11js
COPY tsconfig.base.json tsconfig.json ./
COPY bin ./bin
COPY core ./core
COPY registry ./registry
COPY contract ./contract
COPY cluster ./cluster
COPY broker ./broker
COPY provisioning ./provisioning
COPY cli ./cli
COPY device-sim ./device-sim
COPY console ./console
# Compiles core … cli into build/ and bundles the console; declarations (build/types) are not shipped.
# prune keeps the better-sqlite3 binary built above and drops every dev dependency.
RUN npm run build && rm -rf build/types && npm prune --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim AS runtime
WORKDIR /app
ENV NODE_ENV=production FLEETGATE_DATA_DIR=/data
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/bin ./bin
COPY --from=build /app/build ./build
COPY --from=build /app/console/dist ./console/dist
# The data directory holds CA keys (0600): run as the unprivileged node user, which owns it.
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8883 8443
ENTRYPOINT ["node", "bin/fleetgate.js"]
CMD ["serve"]
